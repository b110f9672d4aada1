"""Who builds a cache folder (data/cache.py): one builder at a time per machine, each recording itself in its
temporary folder, and the leftovers of builders that died.

The processes of a multi-GPU run reach an unbuilt cache together when data.cache_dir is each machine's own disk
(docs/multinode.md): every rank of a machine other than the first would encode the whole dataset at once, with a
temporary copy each. `one_builder` makes them wait for the first, who publishes the folder they then load.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger("agsm.data")
OWNER_FILE = ".builder.json"  # pid and host of the process building a temporary folder


@contextlib.contextmanager
def one_builder(cache_root: Path):
    """Hold an advisory flock on the cache folder itself (so nothing is left behind) while building. Where the
    file system refuses locks (some network file systems), builds run side by side as they always could, and the
    first to finish is kept (cache._publish)."""
    try:
        fd = os.open(cache_root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is building a cache in %s", cache_root)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass  # no locks on this file system
        yield
    finally:
        os.close(fd)  # which drops the lock


def start_build(cache_root: Path, key: str) -> Path:
    """A new temporary folder for building `key`, naming its builder (this process and host)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_root))
    (tmp / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    return tmp


def remove_abandoned_builds(cache_root: Path) -> None:
    """Delete temporary build folders whose builder died (same host, process gone); other hosts' are left alone.

    Folders from before builders recorded themselves are removed once they are a day old."""
    for tmp in Path(cache_root).glob(".*.tmp-*"):
        try:
            owner = json.loads((tmp / OWNER_FILE).read_text())
            abandoned = owner.get("host") == socket.gethostname() and not _process_alive(int(owner["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            abandoned = time.time() - tmp.stat().st_mtime > 24 * 3600
        if abandoned:
            log.info("removing the unfinished cache build %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
