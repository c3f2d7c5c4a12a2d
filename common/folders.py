"""Folders and files named by the user: refused at once, with a one-line UserError naming the flag, when a
stage could not read or write them, so a long run never fails at its first save. Nothing here is created
except by ensure_writable_dir.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from common.errors import UserError


def ensure_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create `path` if needed and prove we can write there; raise a UserError naming `flag` if not."""
    path = Path(path)
    check_output_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot create folder ({e.strerror})") from None
    return path


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Refuse at once a folder that could not be created or written, creating nothing (so a run that fails on
    its inputs leaves no empty folders); the stage creates it when it first writes there."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{flag} {path}: is a file, not a folder")
        _check_can_write_in(path, flag, path)
        return path
    ancestor = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not ancestor.is_dir():
        raise UserError(f"{flag} {path}: {_shown(ancestor)} is a file, not a folder")
    _check_can_write_in(ancestor, flag, path)
    return path


def require_dir(path: str | os.PathLike, flag: str, what: str = "") -> Path:
    """An input folder that must exist: a UserError naming `flag` if it is missing or a file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag} {path}: no such folder{f' ({what})' if what else ''}")
    if not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a folder")
    return path


def check_not_file(path: str | os.PathLike, flag: str) -> Path:
    """A folder flag whose folder may be missing (its files are then reported by name): refuse only a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: is a file, not a folder")
    return path


def output_file_error(path: str | os.PathLike, suffixes: tuple[str, ...] = ()) -> str:
    """Why a single output file cannot be written where asked ('' if it can): an unknown extension, a folder in
    its place, or a parent folder that is missing, a file, or not writable. Nothing is created."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        return f"{path}: must end in {' or '.join(suffixes)}"
    if path.is_dir():
        return f"{path}: is a folder; give a file name"
    parent = path.parent
    if not parent.exists():
        return f"{path}: folder {_shown(parent)} does not exist"
    if not parent.is_dir():
        return f"{path}: {_shown(parent)} is a file, not a folder"
    try:
        _check_can_write_in(parent, "", path)
    except UserError as e:
        return str(e).strip()
    return ""


def _check_can_write_in(folder: Path, flag: str, path: Path) -> None:
    """Create and delete a hidden file in `folder`: unlike os.access, this also holds for root and odd mounts."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
    except OSError as e:
        where = "that folder" if folder == path else f"folder {_shown(folder)}"
        raise UserError(f"{flag} {path}: cannot write in {where} ({e.strerror})".strip()) from None
    os.close(fd)
    os.unlink(probe)


def _shown(path: Path) -> str:
    """A path as the user would write it: relative to the current folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)
