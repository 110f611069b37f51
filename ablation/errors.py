"""One exception type for every user-facing failure.

Messages are one line: what is wrong, which file, and the command or change that fixes it.
The CLI prints ``error: <message>`` and exits 2 instead of a traceback.
"""

import contextlib
import logging
from collections.abc import Iterator


class AblationError(Exception):
    """A user-facing error with a one-line message naming the problem and the fix."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: a notebook (and papermill's error
        report) fails with the one line, like the CLI."""
        return [f"{type(self).__name__}: {self}"]


class DataError(AblationError):
    """Missing, corrupt or mismatching data files."""


class CheckpointError(AblationError):
    """A checkpoint that can't be trusted (corrupt, other architecture, unsafe pickle)."""


class DiskWriteError(AblationError, OSError):
    """A write failed (disk full, permissions); the previous file was kept intact."""

    def __init__(self, errno_: int | None, message: str):
        OSError.__init__(self, errno_, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(AblationError, ValueError):
    """Bad parameters: unknown task, variant, scale or profile; the message lists valid values."""


class MissingModelError(ConfigError):
    """No trained model (or checkpoint) at the scale asked for: a command over several scales
    skips that scale and says so; over one scale it fails."""


def check_choice(name: str, value, valid) -> None:
    """Raise ConfigError listing the valid values when ``value`` is not one of them."""
    valid = list(valid)
    if value not in valid:
        shown = ", ".join(str(v) for v in valid)
        raise ConfigError(f"unknown {name} {value!r}; valid values: {shown}")


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Raise a library's logger to WARNING for a block (pooch's download notices would
    otherwise land in saved notebooks and CLI output)."""
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)
