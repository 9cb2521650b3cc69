"""Timing helpers shared by the benchmarks: warm-up, synchronised timing, a table, a JSON file."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def seconds_per_call(
    fn: Callable[[], Any], device: torch.device, min_time: float = 0.5, warmup: int = 1, max_iters: int = 200
) -> float:
    """Mean seconds per call after `warmup` calls, timing at least `min_time` seconds (and one call)."""
    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    iters, start = 0, time.perf_counter()
    while True:
        fn()
        iters += 1
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time or iters >= max_iters:
            return elapsed / iters


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for r in rows:
        print(" | ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def write_json(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    """Write the results atomically to `out` or benchmarks/results/NAME.json."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    return path
