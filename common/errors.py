"""User-facing errors: one line, exit code 2, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix (a flag, a file, a folder); reported as one line, exit code 2."""


class DataError(UserError):
    """A data file that cannot be used (corrupt, truncated, wrong keys/shapes); the message names the file."""
