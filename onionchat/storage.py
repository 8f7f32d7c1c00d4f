"""Atomic, owner-only file writes: the only way onionchat puts anything on disk."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from onionchat.errors import StorageError

FILE_MODE = 0o600  # stored files hold secrets (hashes, onion keys): owner only
DIR_MODE = 0o700
STALE_TEMP_SECONDS = 600  # no write takes minutes: an older temp file was left by a crash


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and tighten its mode if it is looser."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(DIR_MODE)
    except OSError as exc:
        raise StorageError(f"cannot create directory {path}: {exc.strerror}") from None
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is always either the old or the new complete file.

    Temp file in the same directory (same file system), fsync, rename, fsync the directory:
    a crash at any moment leaves a whole file behind, never a torn one.
    """
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # out of open files (a flood), or of disk: the caller's StorageError, not a crash
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    remove_stale_temp_files(path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError as exc:  # the file is in place; only the rename's durability could not be forced
        raise StorageError(f"cannot sync the directory of {path}: {exc.strerror}") from None
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temp_files(path: Path) -> None:
    """Remove temp files of ``path`` that a crash (kill -9, power loss) left before the rename.

    They are never read, but may hold old secrets (a password hash since changed). Only old
    ones go: a temp file of another process writing right now is seconds old.
    """
    cutoff = time.time() - STALE_TEMP_SECONDS
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if stale.stat().st_mtime < cutoff:
                stale.unlink()


def write_json(path: Path, value: Any) -> None:
    """Atomically store ``value`` as JSON."""
    write_atomic(path, json.dumps(value, indent=1, sort_keys=True).encode("utf-8") + b"\n")


def read_json(path: Path, default: Any) -> Any:
    """Read JSON written by write_json; ``default`` when the file does not exist yet."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise StorageError(f"{path} is unreadable or damaged: {exc}") from None
