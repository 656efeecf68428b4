"""`Started`: what makes a thing with `start()` and `stop()` a context manager (started on
entry, stopped on exit, whatever ends the block). Mixed into `controlplane.ControlPlane`,
`nodes.Node` and `workloads.LocalWorkload`; imports nothing of ours."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Started:
    """`with thing:` is `thing.start()`, then `thing.stop()` however the block ends."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
