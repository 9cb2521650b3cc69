"""Shared fixtures: the golden sets copied from ../shared/golden, small generators."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "data" / "golden"
sys.path.insert(0, str(GOLDEN))  # synth_weights.py


def golden_tolerance(want: torch.Tensor) -> float:
    """The golden README's bound: 1e-4 * max(1, max|want|)."""
    return 1e-4 * max(1.0, want.abs().max().item())


def load_golden(name: str) -> tuple[dict, dict, dict]:
    """(inputs, expected, meta) of one golden set."""
    d = GOLDEN / name
    inputs = torch.load(d / "inputs.pt", weights_only=True)
    expected = torch.load(d / "expected.pt", weights_only=True)
    return inputs, expected, json.loads((d / "meta.json").read_text())


@pytest.fixture(scope="session")
def tiny_golden() -> tuple[dict, dict, dict]:
    return load_golden("stylegan2_tiny")


@pytest.fixture()
def tiny_generator(tiny_golden):
    """The golden 64 px generator with its official weights, loaded strictly."""
    from hairclipv2.models.stylegan2 import Generator
    from hairclipv2.weights import load_generator

    meta = tiny_golden[2]
    g = Generator(
        meta["size"], meta["style_dim"], meta["n_mlp"], meta["channel_multiplier"], channels=meta["channels"]
    ).eval()
    load_generator(g, GOLDEN / "stylegan2_tiny" / "checkpoint.pt")
    return g


def synth_state(name: str, prefix_strip: str | None = None) -> dict:
    """The golden set's synthetic official state dict, rebuilt from its manifest."""
    from synth_weights import load_manifest, synth_state_dict

    return synth_state_dict(load_manifest(str(GOLDEN / name / "manifest.json")), prefix_strip=prefix_strip or "")


ROOT = Path(__file__).resolve().parent.parent
WORLD_WEIGHTS = ROOT / "weights" / "world"


def small_decoder(size: int = 64):
    """A generator with e4e's 512-d codes but small widths (the decoder of the inversion tests)."""
    from hairclipv2.models.stylegan2 import Generator

    torch.manual_seed(0)
    return Generator(size, 512, 2, channels={4: 16, 8: 16, 16: 8, 32: 8, 64: 4}).eval()


class ThresholdParser(torch.nn.Module):
    """A small differentiable face parser for tests, with HairCLIPv2's parser interface: pixels darker
    than the image's mean brightness are hair (10), the rest face (1); returns (logits at 1024,
    logits at H/2) like the BiSeNet of HairCLIPv2.

    `fixed_layout = True` makes the labels independent of the pixels (hair in the top 40% of the
    rows): hard masks then cannot flip between runs whose images differ at float level."""

    fixed_layout = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lum = x.mean(dim=1, keepdim=True)
        score = 20 * (lum.mean(dim=(2, 3), keepdim=True) - lum)
        if self.fixed_layout:
            rows = torch.arange(x.shape[2], device=x.device).view(1, 1, -1, 1) < 0.4 * x.shape[2]
            score = torch.where(rows, 1.0, -1.0).expand_as(lum) + 0 * score
        logits = torch.zeros(x.shape[0], 16, x.shape[2], x.shape[3], device=x.device)
        logits = logits.index_copy(1, torch.tensor([1, 10], device=x.device), torch.cat([-score, score], dim=1))
        half = torch.nn.functional.avg_pool2d(logits, 2)
        return torch.nn.functional.interpolate(half, size=(1024, 1024), mode="nearest"), half


# evaluate.py overrides for small, fast runs (few optimisation steps, no FAN: unit tests cover it).
EVAL_FAST = [
    "experiment=hairclipv2_demo",  # every network random: the pipeline's plumbing, in seconds
    "editing.embedding.w_steps=2",
    "editing.embedding.fs_steps=2",
    "editing.text.steps=2",
    "editing.reference.steps=2",
    "editing.colour.edit_steps=2",
    "editing.colour.final_steps=2",
    "trainer.devices=1",
    "editing.use_landmarks=false",  # the random FAN-4 costs seconds a step on a CPU; unit tests cover it
]
