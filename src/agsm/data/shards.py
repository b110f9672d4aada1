"""Row-sharded tensor storage in safetensors files: write rows in order, read any rows back by index.

Every shard file holds the same keys, each a tensor whose dim 0 is the row; rows are numbered across
shards in order. The shard list records each file's size and SHA-256, so a damaged shard is found before its
bytes reach training (`damaged_shards`). Reading loads everything into RAM when the shards are small (fast fancy indexing) and
otherwise reads just the requested rows through `safe_open`, which memory-maps the files.
"""
from __future__ import annotations

import bisect
import hashlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

# Below this total size the shards are loaded whole: a few GB of RAM buys plain tensor indexing.
IN_MEMORY_LIMIT = 2 * 1024**3


class ShardWriter:
    """Appends rows (a dict of tensors sharing dim 0) and writes `prefix-00000.safetensors` every `shard_size`."""

    def __init__(self, folder: Path, prefix: str, shard_size: int):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.folder, self.prefix, self.shard_size = Path(folder), prefix, shard_size
        self.shards: list[dict] = []  # [{"file", "rows", "bytes", "sha256"}], what the index records
        self.row_shapes: dict[str, list[int]] = {}  # shape of one row per key, as first seen
        self._pending: list[dict[str, torch.Tensor]] = []
        self._pending_rows = 0

    def add(self, rows: dict[str, torch.Tensor]) -> None:
        self._pending.append({k: v.detach().cpu() for k, v in rows.items()})
        for k, v in rows.items():
            self.row_shapes.setdefault(k, list(v.shape[1:]))
        self._pending_rows += next(iter(rows.values())).shape[0]
        while self._pending_rows >= self.shard_size:
            self._flush(self.shard_size)

    def close(self) -> list[dict]:
        """Write what is left; returns the shard list."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        return self.shards

    def _flush(self, n: int) -> None:
        merged = {k: torch.cat([p[k] for p in self._pending]) for k in self._pending[0]}
        name = f"{self.prefix}-{len(self.shards):05d}.safetensors"
        path = self.folder / name
        save_file({k: v[:n].contiguous() for k, v in merged.items()}, str(path))
        self.shards.append({"file": name, "rows": n, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
        rest = {k: v[n:] for k, v in merged.items()}
        self._pending_rows -= n
        self._pending = [rest] if self._pending_rows else []


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def damaged_shards(folder: Path, shards: list[dict]) -> list[str]:
    """'name: why' for each shard that is missing or differs from the size and hash the index recorded.

    Shards of caches written before sizes and hashes were recorded are only checked for presence."""
    problems = []
    for s in shards:
        path = Path(folder) / s["file"]
        if not path.is_file():
            problems.append(f"{s['file']}: missing")
        elif "bytes" in s and path.stat().st_size != s["bytes"]:
            problems.append(f"{s['file']}: {path.stat().st_size} bytes, the index says {s['bytes']}")
        elif "sha256" in s and file_sha256(path) != s["sha256"]:
            problems.append(f"{s['file']}: its content changed (SHA-256 differs from the index)")
    return problems


class ShardReader:
    """Rows of the shards written by `ShardWriter`, gathered by row index."""

    def __init__(self, folder: Path, shards: list[dict], in_memory_limit: int = IN_MEMORY_LIMIT):
        paths = [str(Path(folder) / s["file"]) for s in shards]
        self._starts = [0]  # first row of each shard, plus the total at the end
        for s in shards:
            self._starts.append(self._starts[-1] + s["rows"])
        self.in_memory = sum(Path(p).stat().st_size for p in paths) < in_memory_limit
        self._handles = [safe_open(p, framework="pt") for p in paths]
        self.keys = list(self._handles[0].keys()) if self._handles else []
        self._full: dict[str, torch.Tensor] = {}
        if self.in_memory:
            self._full = {k: torch.cat([h.get_tensor(k) for h in self._handles]) for k in self.keys}
            self._handles = []

    def __len__(self) -> int:
        return self._starts[-1]

    def gather(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """{key: tensor [len(rows), ...]} for the given row indices (any order, repeats allowed)."""
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row indices must lie in [0, {len(self)}), got min {rows.min().item()} "
                             f"max {rows.max().item()}")
        if self.in_memory:
            return {k: v[rows] for k, v in self._full.items()}
        picked = {k: [] for k in self.keys}
        for r in rows.tolist():
            s = bisect.bisect_right(self._starts, r) - 1
            local = r - self._starts[s]
            for k in self.keys:
                picked[k].append(self._handles[s].get_slice(k)[local:local + 1])
        return {k: torch.cat(v) if v else self._empty(k) for k, v in picked.items()}

    def _empty(self, key: str) -> torch.Tensor:
        sl = self._handles[0].get_slice(key)
        return sl[0:0]
