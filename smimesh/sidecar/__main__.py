"""`python -m smimesh.sidecar ...`: the same command as `smimesh sidecar`."""

from smimesh.sidecar import commands

if __name__ == "__main__":
    commands.app(prog_name="python -m smimesh.sidecar")
