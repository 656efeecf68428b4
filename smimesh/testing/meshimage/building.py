"""Builds an image by following a Dockerfile's instructions in order, without a Docker
daemon: each stage's rootfs from its base (`bases`) or an earlier stage, COPY from the build
context or `--from` a stage, RUN in a sandbox (`sandboxing`), and the last stage packed as an
OCI layout (`packing`).

The CLI (`__main__`) calls `build`. The whole result is cached by the digest of its inputs —
the Dockerfile, the build args, each base's mmdebstrap inputs and the content of every file a
COPY takes from the context — so a rebuild with nothing changed only hashes those.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from smimesh.testing.meshimage import bases, dockerfile, failures, packing, sandboxing

KEY_LENGTH = 16
"""Hex digits of the input digest that name a cached layout."""
KEEP_LAYOUTS = 3
"""Cached layouts kept (the newest); an older one goes when a new one is packed."""


@dataclass(frozen=True)
class Request:
    """What to build: a Dockerfile, its context and the tag to give the image."""

    dockerfile: Path
    context: Path
    tag: str
    build_args: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _State:
    """A stage's running state as its instructions change it."""

    rootfs: Path
    env: dict[str, str]
    workdir: str = "/"
    user: str = ""


def build(request: Request, *, cache: Path, say: Callable[[str], None]) -> packing.Packed:
    """The image as an OCI layout under `cache/layouts/`; built unless already cached."""
    try:
        text = request.dockerfile.read_text()
    except OSError as exc:
        raise failures.BuildError(f"cannot read {request.dockerfile}: {exc}") from exc
    parsed = dockerfile.parse(text, build_args=request.build_args)
    specs = _base_specs(parsed)
    key = input_digest(text, request, parsed, specs)
    layout = cache / "layouts" / key[:KEY_LENGTH]
    cached = packing.Packed.load(layout)
    if cached is not None and cached.tag == request.tag:
        say(f"cached: the inputs (digest {key[:KEY_LENGTH]}) were built before")
        return cached
    work = cache / "work" / key[:KEY_LENGTH]
    shutil.rmtree(work, ignore_errors=True)
    try:
        states: dict[int, _State] = {}
        for stage in parsed.stages:
            states[stage.index] = _build_stage(
                stage, parsed, request, specs, states, work, cache, say
            )
        last = parsed.stages[-1]
        final = states[last.index]
        config = packing.ImageConfig(
            env=final.env,
            user=final.user,
            workdir=final.workdir,
            cmd=last.cmd,
            labels=last.labels,
            exposed=last.exposed,
        )
        say("packing the last stage into an OCI layout with umoci")
        packed = packing.pack(final.rootfs, config, layout=layout, tag=request.tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(layout.parent, keep=KEEP_LAYOUTS)
    return packed


def _prune(layouts: Path, *, keep: int) -> None:
    """Only the `keep` newest layouts stay (each is ~100 MiB)."""
    found = sorted(
        (path for path in layouts.iterdir() if path.is_dir()),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for old in found[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _base_specs(parsed: dockerfile.Dockerfile) -> dict[int, bases.BaseSpec]:
    names = set()
    specs = {}
    for stage in parsed.stages:
        if stage.base not in names:
            specs[stage.index] = bases.spec_for(stage.base)
        if stage.name:
            names.add(stage.name)
    return specs


def input_digest(
    text: str,
    request: Request,
    parsed: dockerfile.Dockerfile,
    specs: Mapping[int, bases.BaseSpec],
) -> str:
    """The digest of everything the image's content depends on."""
    digest = hashlib.sha256()
    digest.update(text.encode())
    digest.update(repr(sorted(request.build_args.items())).encode())
    for index in sorted(specs):
        digest.update(specs[index].digest().encode())
    for stage in parsed.stages:
        for step in stage.steps:
            if isinstance(step, dockerfile.Copy) and step.from_stage is None:
                for source in step.sources:
                    for path in _context_files(request.context, source, step.line):
                        relative = path.relative_to(request.context)
                        digest.update(f"{relative}\0{path.stat().st_mode:o}\0".encode())
                        if path.is_file():
                            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _context_files(context: Path, source: str, line: int) -> Iterator[Path]:
    matches = _context_sources(context, source, line)
    for match in matches:
        yield match
        if match.is_dir():
            yield from sorted(match.rglob("*"))


def _context_sources(context: Path, source: str, line: int) -> list[Path]:
    relative = source.lstrip("/")
    matches = (
        sorted(context.glob(relative))
        if any(c in relative for c in "*?[")
        else ([context / relative] if (context / relative).exists() else [])
    )
    root = context.resolve()
    for match in matches:
        if not match.resolve().is_relative_to(root):
            raise failures.BuildError(f"line {line}: COPY {source} is outside the build context")
    if not matches:
        raise failures.BuildError(
            f"line {line}: COPY {source}: no such file in the build context {context}"
            + (" (run `make wheels` first)" if "wheels" in source else "")
        )
    return matches


def _build_stage(
    stage: dockerfile.Stage,
    parsed: dockerfile.Dockerfile,
    request: Request,
    specs: Mapping[int, bases.BaseSpec],
    states: Mapping[int, _State],
    work: Path,
    cache: Path,
    say: Callable[[str], None],
) -> _State:
    label = stage.name or str(stage.index)
    rootfs = work / f"stage-{stage.index}"
    rootfs.mkdir(parents=True)
    if stage.index in specs:
        tarball = bases.ensure_base(specs[stage.index], cache=cache, say=say)
        _run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(rootfs)], "unpacking")
        state = _State(rootfs, dict(dockerfile.BASE_ENV))
    else:
        parent = states[parsed.stage(stage.base).index]
        _run(["cp", "-a", f"{parent.rootfs}/.", str(rootfs)], "copying the stage")
        state = _State(rootfs, dict(parent.env), parent.workdir, parent.user)
    for number, step in enumerate(stage.steps, start=1):
        prefix = f"[{label} {number}/{len(stage.steps)}] line {step.line}"
        if isinstance(step, dockerfile.Env):
            state.env.update(step.values)
        elif isinstance(step, dockerfile.Workdir):
            state.workdir = str(PurePosixPath(state.workdir, step.path))
            inside(rootfs, state.workdir).mkdir(parents=True, exist_ok=True)
        elif isinstance(step, dockerfile.User):
            state.user = step.user
        elif isinstance(step, dockerfile.Copy):
            say(f"{prefix}: COPY {' '.join(step.sources)} {step.destination}")
            _copy(step, parsed, request.context, state, states)
        elif isinstance(step, dockerfile.Run):
            network = sandboxing.needs_network(step.command)
            say(f"{prefix}: RUN {step.text[:90]}" + (" (with apt's network)" if network else ""))
            started = time.monotonic()
            uid, gid = resolve_user(rootfs, state.user)
            sandbox = sandboxing.Sandbox(rootfs, state.workdir, dict(state.env), uid, gid, network)
            sandboxing.run_step(sandbox, step.command, what=f"{prefix} (RUN)", say=say)
            say(f"  done in {time.monotonic() - started:.1f}s")
    return state


def _copy(
    step: dockerfile.Copy,
    parsed: dockerfile.Dockerfile,
    context: Path,
    state: _State,
    states: Mapping[int, _State],
) -> None:
    if step.from_stage is not None:
        source_root = states[parsed.stage(step.from_stage).index].rootfs
        sources = [inside(source_root, source) for source in step.sources]
        missing = [str(source) for source in sources if not source.exists()]
        if missing:
            raise failures.BuildError(f"line {step.line}: COPY --from: no {', '.join(missing)}")
    else:
        sources = [
            m for source in step.sources for m in _context_sources(context, source, step.line)
        ]
    destination = str(PurePosixPath(state.workdir, step.destination))
    into_directory = step.destination.endswith("/") or len(sources) > 1
    target = inside(state.rootfs, destination)
    for source in sources:
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            _run(
                ["cp", "-R", "--preserve=mode,timestamps,links", f"{source}/.", str(target)],
                f"line {step.line}: COPY",
            )
        else:
            file_target = target / source.name if into_directory else target
            file_target.parent.mkdir(parents=True, exist_ok=True)
            _run(
                ["cp", "--preserve=mode,timestamps", str(source), str(file_target)],
                f"line {step.line}: COPY",
            )


def inside(rootfs: Path, path: str) -> Path:
    """`path` as the rootfs sees it, symlinks resolved within the rootfs (an absolute link
    such as `/bin -> usr/bin` never leads to the host's files)."""
    current = PurePosixPath("/")
    parts = list(PurePosixPath("/", path).parts[1:])
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent
            continue
        candidate = rootfs / str(current / part).lstrip("/")
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise failures.BuildError(f"too many symlinks resolving {path} in the image")
            link = PurePosixPath(str(candidate.readlink()))
            parts = list(link.parts[1:] if link.is_absolute() else link.parts) + parts
            if link.is_absolute():
                current = PurePosixPath("/")
            continue
        current = current / part
    return rootfs / str(current).lstrip("/")


def resolve_user(rootfs: Path, user: str) -> tuple[int, int]:
    """(uid, gid) of a USER value, names looked up in the rootfs's passwd and group."""
    if not user:
        return 0, 0
    name, _, group = user.partition(":")

    def lookup(file: str, wanted: str) -> list[str]:
        for line in inside(rootfs, f"/etc/{file}").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == wanted:
                return fields
        raise failures.BuildError(f"USER {user}: no {wanted!r} in the image's /etc/{file}")

    if name.isdigit():
        uid = int(name)
        entries = [
            line.split(":") for line in inside(rootfs, "/etc/passwd").read_text().splitlines()
        ]
        gid = next((int(e[3]) for e in entries if len(e) > 3 and e[2] == name), 0)
    else:
        fields = lookup("passwd", name)
        uid, gid = int(fields[2]), int(fields[3])
    if group:
        gid = int(group) if group.isdigit() else int(lookup("group", group)[2])
    return uid, gid


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise failures.BuildError(f"{what} failed: {result.stderr.strip()}")
