"""The one error of the image builder: every module here raises `BuildError` (or a subclass)
with a message that says what failed and what to do; the CLI prints it without a traceback."""

from __future__ import annotations


class BuildError(RuntimeError):
    """The image cannot be built; the message says why and what to change."""
