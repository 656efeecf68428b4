"""Helm, the one pinned version the chart in charts/smimesh/ is tested with: built once from
its Go module by `gotools` and cached (`make helm` prints its path; tests/charts/ use it).

`python -m smimesh.testing.helm` builds it if needed and prints where it is.
"""

from __future__ import annotations

from pathlib import Path

from smimesh.testing import gotools

HELM = gotools.GoTool("helm", "helm.sh/helm/v3/cmd/helm", "v3.22.0")
"""`go install helm.sh/helm/v3/cmd/helm@v3.22.0` (about 6 min cold on 2 cores)."""


def ensure() -> Path:
    """The cached helm executable, built first if missing (`gotools.GoToolError` if it
    cannot be)."""
    return gotools.ensure_tool(HELM)


def main() -> int:
    return gotools.print_path(ensure)


if __name__ == "__main__":
    raise SystemExit(main())
