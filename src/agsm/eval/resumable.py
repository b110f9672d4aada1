"""The one resumable-run policy of every evaluation that resumes (eval shapes, coco, geneval-export, pie-bench,
edit-shapes): an output folder tied to the settings that decide its items.

    out/config.json     RECORD: the settings that decide every item (model and token files, seeds, sampler ...),
                        then what was resolved from the model once it was loaded (`resolved`: its sampler, size,
                        editing method), as one flat JSON object
    out/manifest.jsonl  one line per finished item, appended and fsynced after its image is on disk
    out/<items>/        the items' images, each written atomically (agsm.utils.atomic_files.write_png)

A run started again with the same settings skips what the manifest holds and, from the same items in the same
order, writes byte-identical results; a torn last manifest line (killed mid-append) is cut and that item redone; a
finished run is summarised again from the record alone, without loading the model.

The policy: a folder holding a run with OTHER settings is REFUSED, with an error naming each changed setting (then
and now) and the fix, unless the caller passes `overwrite=True`, which starts the folder afresh (with a warning
naming what changed). Why refuse by default: these folders hold hours of GPU work (5,000 COCO images, PIE-Bench
edits); a typo in --seed or --tokens must not silently delete them, and mixing two runs' images would publish
numbers no single run gave. Callers that own and regenerate their folders on purpose (`make demo`, which also
retrains on every run, and the study scripts, agsm.study.arms) pass overwrite=True, which is what `agsm eval shapes`
did for every caller before both policies were made one.

Folders written before the record had one name are still understood: `run.json` (eval shapes / edit-shapes, as
{"settings", "sampler"}) and `export.json` (geneval-export) are read when config.json is absent; the next write
goes to config.json.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from ..utils.atomic_files import write_json

log = logging.getLogger(__name__)
RECORD, MANIFEST = "config.json", "manifest.jsonl"
LEGACY_RECORDS = ("run.json", "export.json")  # the names used before one record name; read, never written


class SettingsChanged(ValueError):
    """A folder holds a run with other settings; the message names each change and the fix."""


class RunRecord:
    """The settings (and resolved values) of the run in `out`, checked against this run's: refused or restarted.

    `resolved_keys`: the record's keys known only once the model is loaded (set by `resolve`); the rest are the
    settings, known before. `clear`: removes the folder's items when overwrite starts it afresh."""

    def __init__(self, out: str | Path, settings: dict, resolved_keys: Iterable[str] = ("sampler",),
                 overwrite: bool = False, clear: Callable[[], None] | None = None):
        self.out, self.settings, self.overwrite = Path(out), dict(settings), overwrite
        self.resolved_keys = tuple(resolved_keys)
        self._clear = clear or (lambda: None)
        self.out.mkdir(parents=True, exist_ok=True)
        saved = self._read()
        self.resolved: dict | None = None
        if saved is not None:
            held = {k: v for k, v in saved.items() if k not in self.resolved_keys}
            if self._agrees(held, self.settings):
                resolved = {k: saved[k] for k in self.resolved_keys if k in saved}
                self.resolved = resolved if len(resolved) == len(self.resolved_keys) else None
            else:
                self._start_afresh()

    @property
    def path(self) -> Path:
        return self.out / RECORD

    def resolve(self, resolved: dict) -> None:
        """Record what the loaded model resolved (sampler, size ...); a run resolved otherwise is another run."""
        if self.resolved is not None and resolved != self.resolved:
            self._agrees(self.resolved, resolved)
            self._start_afresh()
        if resolved != self.resolved or not self.path.is_file():
            self.resolved = dict(resolved)
            write_json(self.path, {**self.settings, **self.resolved})
            for name in LEGACY_RECORDS:  # one record per folder: an older one, now copied over, goes
                (self.out / name).unlink(missing_ok=True)

    def check_given(self, given: dict, held: dict | None = None) -> None:
        """A finished run summarised again: refuse any explicitly given value (not None) that differs from what
        the run resolved (or from `held`, a flattened view of it), e.g. `--guidance 2` on a run drawn with 7."""
        held = (self.resolved or {}) if held is None else held
        for name, value in given.items():
            if value is not None and value != held.get(name):
                raise SettingsChanged(f"{name} {value!r} differs from the finished run in {self.out} "
                                      f"({held.get(name)!r}); "
                                      "leave it out to summarise that run, or use another --out for a new run")

    def _agrees(self, held: dict, now: dict) -> bool:
        changed = {k: (held.get(k), now.get(k)) for k in sorted(set(held) | set(now)) if held.get(k) != now.get(k)}
        if not changed:
            return True
        diff = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
        if not self.overwrite:
            raise SettingsChanged(f"{self.out} holds a run with other settings ({diff}); use the same settings to "
                                  "resume it, another --out for a new run, or --overwrite (overwrite=True) to start this folder afresh")
        log.warning("%s holds a run with other settings (%s); starting it afresh", self.out, diff)
        return False

    def _start_afresh(self) -> None:
        for name in (RECORD, *LEGACY_RECORDS):
            (self.out / name).unlink(missing_ok=True)
        self._clear()
        self.resolved = None

    def _read(self) -> dict | None:
        """The flat record, from config.json or an older name; {} (mismatching anything) if unreadable."""
        for name in (RECORD, *LEGACY_RECORDS):
            path = self.out / name
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except ValueError:
                    return {"unreadable": name}
                if name == "run.json":  # eval shapes / edit-shapes before: {"settings": {...}, "sampler": ...}
                    if not isinstance(data, dict) or "settings" not in data:
                        return {"unreadable": name}
                    sampler = {"sampler": data["sampler"]} if data.get("sampler") is not None else {}
                    return {**(data["settings"] or {}), **sampler}
                return data if isinstance(data, dict) else {"unreadable": name}
        return {"unreadable": MANIFEST} if (self.out / MANIFEST).exists() else None


class Manifest:
    """Append-only JSONL of finished items, keyed by an integer field. A kill while appending can leave a
    torn last line: it is cut off on open, and that item is redone."""

    def __init__(self, path: Path, key: str = "index"):
        self.path, self.key = Path(path), key
        self.entries: dict[int, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                data = data[: data.rfind(b"\n") + 1]
                self.path.write_bytes(data)
            for line in data.decode().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.entries[entry[key]] = entry

    def done(self, folder: Path) -> set[int]:
        """Keys whose entry is recorded and whose image is on disk."""
        return {k for k, e in self.entries.items() if (Path(folder) / e["file"]).is_file()}

    def append(self, entry: dict) -> None:
        self.extend([entry])

    def extend(self, entries: list[dict]) -> None:
        """Record several finished items in one write; a kill leaves some of them and a torn line, cut on open."""
        with open(self.path, "a") as f:
            f.write("".join(json.dumps(entry) + "\n" for entry in entries))
            f.flush()
            os.fsync(f.fileno())
        for entry in entries:
            self.entries[entry[self.key]] = entry


class ResumableRun(RunRecord):
    """A RunRecord with a manifest of finished items whose images live in out/<items_dir>/; `entries` holds the
    finished items by index, `record(entries)` adds more. An entry's "file" is relative to out ("images/00003.png",
    eval shapes and edit-shapes), or with `files_in_items_dir` to the items folder ("000000000139.png", COCO and
    PIE-Bench): each as its manifests always were, so older folders resume."""

    def __init__(self, out: str | Path, settings: dict, items_dir: str = "images", resolved_keys=("sampler",),
                 overwrite: bool = False, files_in_items_dir: bool = False):
        self.items_dir, self._file_root = items_dir, Path(out) / items_dir if files_in_items_dir else Path(out)
        super().__init__(out, settings, resolved_keys, overwrite, clear=self._clear_items)
        if self.resolved is None and not self.path.is_file():
            write_json(self.path, self.settings)  # the settings are on disk before the first item
        (self.out / items_dir).mkdir(exist_ok=True)
        self._manifest = Manifest(self.out / MANIFEST)

    @property
    def sampler(self) -> dict | None:
        return (self.resolved or {}).get("sampler")

    @property
    def entries(self) -> dict[int, dict]:
        """Finished items whose image is on disk, by index."""
        done = self._manifest.done(self._file_root)
        return {k: e for k, e in self._manifest.entries.items() if k in done}

    def image_path(self, index: int) -> str:
        return f"{self.items_dir}/{index:05d}.png"

    def file(self, index: int) -> Path:
        """Where item `index`'s image is."""
        return self._file_root / self._manifest.entries[index]["file"]

    def record(self, entries: list[dict]) -> None:
        self._manifest.extend(entries)

    def image(self, index: int) -> Image.Image:
        with Image.open(self.file(index)) as image:
            return image.convert("RGB")

    def _clear_items(self) -> None:
        (self.out / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(self.out / self.items_dir, ignore_errors=True)
        (self.out / self.items_dir).mkdir(exist_ok=True)
        if hasattr(self, "_manifest"):
            self._manifest = Manifest(self.out / MANIFEST)


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
