"""An evaluation output folder that survives a kill: judged items in an append-only manifest, tied to settings.

    out/run.json        the settings that decide every item (model and token files by content, seeds, sampler)
    out/manifest.jsonl  one line per finished item, appended and fsynced after its image is on disk
    out/<items>/        the items' images, each written atomically

A run started again with the same settings skips what the manifest holds and, from the same items in the same
order, writes a byte-identical results.json. A folder holding a run with other settings (another token file,
seed, suite ...) is started afresh, with a warning listing what changed, as a plain rerun always did.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from PIL import Image

from ..utils.atomic_files import write_json
from .generation import Manifest

log = logging.getLogger(__name__)
SETTINGS, MANIFEST = "run.json", "manifest.jsonl"


class ResumableRun:
    """`entries` holds the finished items by index; `record(entries)` adds more."""

    def __init__(self, out: str | Path, settings: dict, items_dir: str = "images"):
        self.out, self.items_dir = Path(out), items_dir
        self.out.mkdir(parents=True, exist_ok=True)
        saved = self._saved_settings()
        if saved is not None and saved.get("settings") != settings:
            changed = sorted(k for k in set(saved.get("settings") or {}) | set(settings)
                             if (saved.get("settings") or {}).get(k) != settings.get(k))
            log.warning("%s holds an evaluation with other settings (%s); starting it afresh", self.out,
                        ", ".join(changed) or "unreadable run.json")
            self._clear()
            saved = None
        self.sampler = saved.get("sampler") if saved else None
        self.settings = settings
        if saved is None:
            write_json(self.out / SETTINGS, {"settings": settings, "sampler": None})
        (self.out / items_dir).mkdir(exist_ok=True)
        self._manifest = Manifest(self.out / MANIFEST)

    @property
    def entries(self) -> dict[int, dict]:
        """Finished items whose image is on disk, by index."""
        done = self._manifest.done(self.out)
        return {k: e for k, e in self._manifest.entries.items() if k in done}

    def set_sampler(self, sampler: dict) -> None:
        """Record the resolved sampler, so a finished run can be summarised again without loading the model."""
        if sampler != self.sampler:
            self.sampler = sampler
            write_json(self.out / SETTINGS, {"settings": self.settings, "sampler": sampler})

    def image_path(self, index: int) -> str:
        return f"{self.items_dir}/{index:05d}.png"

    def record(self, entries: list[dict]) -> None:
        self._manifest.extend(entries)

    def image(self, index: int) -> Image.Image:
        with Image.open(self.out / self._manifest.entries[index]["file"]) as image:
            return image.convert("RGB")

    def _saved_settings(self) -> dict | None:
        path = self.out / SETTINGS
        if not path.is_file():
            return None if not (self.out / MANIFEST).exists() else {}
        try:
            return json.loads(path.read_text())
        except ValueError:
            return {}

    def _clear(self) -> None:
        (self.out / MANIFEST).unlink(missing_ok=True)
        (self.out / SETTINGS).unlink(missing_ok=True)
        shutil.rmtree(self.out / self.items_dir, ignore_errors=True)


def file_digest(path: str | Path | None) -> str | None:
    """SHA-256 of a file's bytes (None for None): a token file retrained at the same path is another run."""
    if path is None:
        return None
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_stamp(folder: str | Path) -> str:
    """A cheap identity of a model folder: every file's relative path, size and modification time, hashed."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
