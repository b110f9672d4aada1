"""Files that are either the old complete version or the new complete version, never a torn mix.

Every write goes to a temporary name in the same folder, is flushed to disk and then renamed over the
target (a rename within one file system is atomic). A full disk becomes a `DiskFullError` that names the
folder and the space the write needed, and the temporary file is removed, so the previous file survives.
"""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
from pathlib import Path

from ..errors import AgsmError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(AgsmError):
    """No space (or quota) left while writing into a folder."""

    def __init__(self, folder: Path, needed: int, what: str = "files"):
        free = _free_bytes(folder)
        have = f"{_size(free)} free" if free is not None else "too little free"
        super().__init__(f"no space left in {folder} to write {what} (needs about {_size(needed)}, {have}); "
                         "free some space there (or point the output elsewhere) and run the same command again")
        self.folder, self.needed = Path(folder), needed


def is_disk_full(exc: BaseException) -> bool:
    """An OSError for a full disk or quota; safetensors reports the same condition as its own error type."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return True
    return "No space left on device" in str(exc) or "os error 28" in str(exc)


def ensure_free_space(folder: Path, needed: int, what: str = "files") -> None:
    """Refuse before writing when the folder's file system has less than `needed` bytes free."""
    free = _free_bytes(folder)
    if free is not None and free < needed:
        raise DiskFullError(folder, needed, what)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise DiskFullError(path.parent, len(data), path.name) from exc
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent))


def write_png(path: str | Path, image) -> Path:
    """A PIL image as PNG, atomically: a file under its final name is always a whole image, so an evaluation
    killed mid-write resumes from complete images only. Encoded in memory first: the same bytes as image.save."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())


def _free_bytes(folder: Path) -> int | None:
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:  # the nearest existing folder's file system
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
