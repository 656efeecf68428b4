"""The projected ServiceAccount token, read again whenever its file changes. The kubelet
rotates a projected token well before it expires by replacing the file (an atomic swap of the
`..data` symlink), so the token is never cached for longer than the file it came from.

Used by `discovery` (the Hello of every new config stream) and `certifying` (every CSR);
neither may send a token over a plaintext channel, which `commands` refuses at start-up.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class TokenError(OSError):
    """The token file cannot be read, or holds no token; the message says which file."""


class TokenFile:
    """`read()` gives the token the file holds now. The file is stat'ed on every call (which
    follows the kubelet's symlinks to the file they point at now) and read again whenever
    its device, inode, size or modification time differ from the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._token = ""

    def read(self) -> str:
        try:
            stat = self.path.stat()  # follows symlinks: the file they point at now
            seen = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if seen == self._seen:
                return self._token
            token = self.path.read_text().strip()
        except OSError as exc:
            raise TokenError(f"token file {self.path}: {exc.strerror or exc}") from None
        if not token:
            raise TokenError(f"token file {self.path} is empty")
        if self._seen is not None and token != self._token:
            log.info("token file %s changed: the next connection uses the new token", self.path)
        # Read after the stat: if the file was swapped in between we keep the newer token
        # under the older stat, and the next call reads it again.
        self._seen, self._token = seen, token
        return token
