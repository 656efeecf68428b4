"""Config from a file: the canonical JSON of a `ProxyConfig`, reloaded when the file changes
(mtime/size/inode poll) or on demand (SIGHUP). A file that fails to parse or apply is logged
and the last good config stays in force.

Started by `running` when `--config FILE` is given; feeds `ConfigSink.apply` (the sidecar),
the same seam `discovery` feeds from the operator's config server.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from smimesh.proxyconfig import snapshots

log = logging.getLogger(__name__)


class ConfigSink(Protocol):
    def apply(self, config: snapshots.ProxyConfig) -> None:
        """Apply a snapshot or raise (ValueError and friends) leaving the old one in force."""


class FileSource:
    def __init__(self, path: Path, sink: ConfigSink, *, poll_seconds: float = 1.0) -> None:
        self.path = path
        self.sink = sink
        self.poll_seconds = poll_seconds
        self.reload = asyncio.Event()
        self._seen: tuple[int, int, int] | None = None
        self.last_error: str | None = None

    def load_once(self) -> bool:
        """Read and apply the file if it changed (or if `reload` was asked); True if applied."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self.last_error = f"{self.path} does not exist"
            return False
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if seen == self._seen and not self.reload.is_set():
            return False
        self.reload.clear()
        self._seen = seen
        try:
            config = snapshots.ProxyConfig.from_json(self.path.read_bytes())
            self.sink.apply(config)
        except Exception as exc:  # any failure keeps the last good config
            self.last_error = f"{self.path}: {exc}"
            log.error("config file rejected, keeping the last good config: %s", self.last_error)
            return False
        self.last_error = None
        log.info("config %s applied from %s", config.version, self.path)
        return True

    async def run(self) -> None:
        while True:
            self.load_once()
            try:
                async with asyncio.timeout(self.poll_seconds):
                    await self.reload.wait()
            except TimeoutError:
                pass
