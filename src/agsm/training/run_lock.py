"""One writer per run folder: a lock file holding the owner's pid, host and start time.

The lock is an advisory `flock` on `<folder>/train.lock`, which the kernel drops when its process dies, however
it dies (kill -9 included); so a second writer is refused at once, and a lock left by a dead process is free
and taken over with a warning naming that process. The file itself stays (emptied on a clean exit): removing
it could let two processes lock two different files of the same name.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from ..errors import AgsmError

log = logging.getLogger("agsm.train")
LOCK_NAME = "train.lock"


class RunFolderInUse(AgsmError):
    """Another live process owns the run folder."""


class RunLock:
    """Hold `folder/train.lock` until `release()` (or the process's end)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderInUse(f"cannot lock {self.path} ({exc}); the file system may not support locks "
                                     "(Lustre needs its flock mount option): choose a train.output_dir on one that "
                                     "does, a local disk for one machine or a shared one for several "
                                     "(docs/multinode.md)") from exc
            owner = _describe(_read(self.path))
            raise RunFolderInUse(f"{self.path.parent} is in use by {owner}; wait for that run to end, or choose "
                                 "another train.output_dir") from None
        previous = _read(self.path)
        if previous and previous.get("host") not in (None, socket.gethostname()):
            os.close(fd)  # a lock of another machine on a shared disk: its process cannot be checked from here
            raise RunFolderInUse(f"{self.path.parent} is locked by {_describe(previous)}; if that run has ended, "
                                 f"delete {self.path} and start again")
        if previous:
            log.warning("%s: taking over the lock of %s, which is no longer running (it ended without releasing it)",
                        self.path.parent, _describe(previous))
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # empty: a later run sees a clean hand-over, not a crash
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(path: Path) -> dict | None:
    try:
        text = path.read_text().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return {"pid": "?", "host": None, "started": "?"}  # torn or foreign content: still someone's lock


def _describe(owner: dict | None) -> str:
    if not owner:
        return "another process"
    return f"process {owner.get('pid')} on {owner.get('host')} (started {owner.get('started')})"
