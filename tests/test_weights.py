"""Checkpoint loading: official containers, missing files, mismatched keys."""

from __future__ import annotations

import pytest
import torch

from hairclipv2.models.stylegan2 import Generator
from hairclipv2.weights import CheckpointError, MissingCheckpointError, load_generator

from conftest import GOLDEN


def small_generator() -> Generator:
    return Generator(16, 8, 1, channels={4: 8, 8: 8, 16: 4})


def test_missing_file_names_file_conf_key_and_source(tmp_path):
    with pytest.raises(MissingCheckpointError) as err:
        load_generator(small_generator(), tmp_path / "nope.pt")
    msg = str(err.value)
    assert (
        "nope.pt" in msg
        and "paths.weights.stylegan2" in msg
        and "stylegan2-ffhq-config-f.pt" in msg
        and "rosinality" in msg
    )
    with pytest.raises(MissingCheckpointError, match="no path set"):
        load_generator(small_generator(), None)


def test_plain_state_dict_and_container_load_identically(tmp_path):
    src = small_generator()
    torch.save(src.state_dict(), tmp_path / "plain.pt")
    torch.save({"g_ema": src.state_dict(), "latent_avg": torch.full((8,), 0.5)}, tmp_path / "container.pt")
    a, b = small_generator(), small_generator()
    avg_plain = load_generator(a, tmp_path / "plain.pt")
    avg_container = load_generator(b, tmp_path / "container.pt")
    w = torch.randn(1, a.n_latent, 8)
    assert torch.equal(a.synthesis(w), src.synthesis(w)) and torch.equal(b.synthesis(w), src.synthesis(w))
    assert torch.equal(avg_container, torch.full((8,), 0.5))
    assert avg_plain.shape == (8,)


def test_mismatched_checkpoint_lists_keys(tmp_path):
    sd = small_generator().state_dict()
    sd.pop("conv1.noise.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["input.input"] = torch.zeros(1, 3, 4, 4)
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_generator(small_generator(), tmp_path / "bad.pt")
    msg = str(err.value)
    assert "missing keys (1): conv1.noise.weight" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "input.input: checkpoint (1, 3, 4, 4) vs model (1, 8, 4, 4)" in msg


def test_a_file_of_another_up_sampling_filter_names_the_filter_to_set(tmp_path):
    box = Generator(16, 8, 1, channels={4: 8, 8: 8, 16: 4}, blur_kernel=(1, 1))
    torch.save({"g_ema": box.state_dict()}, tmp_path / "box.pt")
    with pytest.raises(CheckpointError, match=r"set the generator's blur_kernel to \[1.0, 1.0\]"):
        load_generator(small_generator(), tmp_path / "box.pt")
    torch.save({"g_ema": small_generator().state_dict()}, tmp_path / "stylegan2.pt")
    with pytest.raises(CheckpointError, match=r"blur_kernel to \[1.0, 3.0, 3.0, 1.0\]"):
        load_generator(box, tmp_path / "stylegan2.pt")
    load_generator(Generator(16, 8, 1, channels={4: 8, 8: 8, 16: 4}, blur_kernel=[1, 1]), tmp_path / "box.pt")


def test_golden_checkpoint_into_wrong_widths_is_rejected():
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_generator(
            Generator(64, 64, 2, channels={4: 32, 8: 64, 16: 32, 32: 32, 64: 16}),
            GOLDEN / "stylegan2_tiny" / "checkpoint.pt",
        )


def test_corrupt_file_is_reported_by_name(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_generator(small_generator(), path)
