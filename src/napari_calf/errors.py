"""Errors a user can act on.

Every message names the file (or setting), the problem and the fix. Front ends
catch :class:`CalfError` and show its text as is: the CLI prints it without a
traceback, the napari widgets turn it into a notification.
"""

from __future__ import annotations

from pathlib import Path


class CalfError(Exception):
    """Base class: an error whose message is written for the user."""


class CalfInputError(CalfError, ValueError):
    """Bad input data: a file, a folder or an array that cannot be used as given."""

    def __init__(self, path: str | Path | None, problem: str, fix: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem} Fix: {fix}")


class CalfConfigError(CalfError, ValueError):
    """A setting (name, value, rule table, option combination) that cannot be used."""


class CalfFileExistsError(CalfError, FileExistsError):
    """Writing would overwrite a user's file without having been asked to."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(
            f"{self.path}: already exists and was left untouched. "
            "Fix: choose another output path, or pass overwrite=True "
            "(--overwrite on the command line) to replace it."
        )


class CalfCheckpointError(CalfError, OSError):
    """A checkpoint or run folder that is missing, unsafe or does not match."""


class CalfTrainingError(CalfError, RuntimeError):
    """Training stopped for a reason the user must act on (non-finite loss, out of memory …)."""
