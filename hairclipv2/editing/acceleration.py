"""GPU paths of an edit (ours, #15): bf16 autocast, channels_last, a compiled generator.

All three are off by default, so an edit computes exactly what HairCLIPv2's float32 code computes.

- `precision="bf16"`: the edit (generator, CLIP, VGG, LPIPS, parser, landmarks) runs under
  `torch.autocast(dtype=torch.bfloat16)`; the optimised codes, Adam's state and the losses' sums stay
  float32. benchmarks/generator.py reports the generator's largest error against float32.
- `channels_last`: the shared networks' weights and the generator's activations in channels_last
  memory format, which the GPU's tensor-core convolutions prefer.
- `compile`: the generator's block loop through `torch.compile` (`compile_backend`, default inductor);
  the first edits compile it once per (start block, end block, batch) they use.

They work on a CPU too (the tests run them there); `benchmarks/generator.py --gpu-paths` times them
there, and on a GPU without the flag.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("float32", "bf16")


def to_channels_last(module: nn.Module) -> None:
    """Every 4-D weight and buffer of `module` in channels_last layout, in place (`Module.to` would
    refuse the generator's 5-D modulated-conv weights)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.ndim == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)


@dataclass
class Acceleration:
    precision: str = "float32"
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"editing.acceleration.precision must be one of {PRECISIONS}, got {self.precision!r}")

    def apply(self, networks: Mapping[str, nn.Module | None]) -> None:
        """Put the networks in channels_last and compile the generator, as configured (in place)."""
        if self.channels_last:
            for network in networks.values():
                if network is not None:
                    to_channels_last(network)
            networks["generator"].memory_format = torch.channels_last
        if self.compile:
            networks["generator"].compile_blocks(backend=self.compile_backend)

    @contextlib.contextmanager
    def autocast(self, device: torch.device) -> Iterator[None]:
        """bf16 autocast on `device` when precision is "bf16"; otherwise nothing changes."""
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            yield
