"""Per-source results an editor reuses when one photo is edited several times (five hairstyles, three
colours): its FS embedding and its parser labels, keyed by a hash of the source's pixels.

The cache holds at most `size` sources (least recently used first out), each a few tensors: at 1024 px
an FS code is 18x512 codes, a 512x32x32 feature and the 3x1024x1024 reconstruction (~13 MB in float32).
A hit skips the 1350 optimisation steps of the embedding. The embedding draws fresh noise, so a
cached source's later random draws differ from an uncached run's (the values are as valid).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import torch


def content_key(image: torch.Tensor) -> str:
    """A hash of an image's values (any device or dtype is hashed as float32 on the CPU)."""
    data = image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


class SourceCache:
    def __init__(self, size: int = 8):
        if size < 1:
            raise ValueError(f"a source cache holds at least one source, got size={size}")
        self.size = size
        self.entries: OrderedDict[str, dict[str, tuple[torch.Tensor, ...]]] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(
        self, name: str, images: torch.Tensor, compute: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    ) -> tuple[torch.Tensor, ...]:
        """`compute(images)`: tensors (N, ...) of a batch of images, with the rows of cached sources
        taken from the cache and only the others computed (as one batch), then stored under `name`."""
        keys = [content_key(x) for x in images]
        rows: list[tuple[torch.Tensor, ...] | None] = [self.get(k, name) for k in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = compute(images[missing])
            for j, i in enumerate(missing):
                rows[i] = tuple(t[j : j + 1] for t in fresh)
                self.put(keys[i], name, rows[i])
        return tuple(torch.cat([row[k].to(images.device) for row in rows]) for k in range(len(rows[0])))

    def get(self, key: str, name: str) -> tuple[torch.Tensor, ...] | None:
        entry = self.entries.get(key)
        if entry is None or name not in entry:
            return None
        self.entries.move_to_end(key)
        return entry[name]

    def put(self, key: str, name: str, value: tuple[torch.Tensor, ...]) -> None:
        self.entries.setdefault(key, {})[name] = tuple(t.detach() for t in value)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
