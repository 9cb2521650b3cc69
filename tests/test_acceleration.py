"""The editor's GPU paths on the generator (editing/acceleration.py), checked on the CPU: channels_last
activations and the compiled block loop compute what the plain generator computes."""

from __future__ import annotations

import pytest
import torch

from hairclipv2.config import ConfigError, build
from hairclipv2.editing.acceleration import Acceleration
from hairclipv2.models.stylegan2 import Generator


def small_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(32, 64, 2, channels={4: 32, 8: 32, 16: 16, 32: 16}).eval().requires_grad_(False)


def test_channels_last_and_the_compiled_block_loop_match_the_plain_generator():
    import torch._dynamo

    plain, fast = small_generator(), small_generator()
    Acceleration(channels_last=True, compile=True, compile_backend="eager").apply({"generator": fast})
    torch._dynamo.reset()
    w = torch.randn(2, plain.n_latent, 64)
    feature, skip = fast.features(w, end_layer=1)
    assert feature.is_contiguous(memory_format=torch.channels_last)
    compiled_frames = torch._dynamo.utils.counters["frames"]["ok"]
    assert compiled_frames > 0
    torch.testing.assert_close(feature, plain.features(w, end_layer=1)[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.resume(w, 2, feature, skip), plain.synthesis(w), rtol=1e-5, atol=1e-5)

    wg = w.clone().requires_grad_(True)
    fast.synthesis(wg).square().mean().backward()
    wp = w.clone().requires_grad_(True)
    plain.synthesis(wp).square().mean().backward()
    torch.testing.assert_close(wg.grad, wp.grad, rtol=1e-4, atol=1e-6)


def test_float32_acceleration_changes_nothing():
    plain, same = small_generator(), small_generator()
    acceleration = Acceleration()
    acceleration.apply({"generator": same})
    w = torch.randn(2, plain.n_latent, 64)
    with acceleration.autocast(w.device):
        assert torch.equal(same.synthesis(w), plain.synthesis(w))


def test_an_unknown_precision_is_a_config_error_naming_the_key():
    with pytest.raises(ValueError, match=r"editing.acceleration.precision must be one of .*'fp8'"):
        Acceleration(precision="fp8")
    with pytest.raises(ConfigError, match=r"editing.acceleration: unknown keys \['half'\]"):
        build(Acceleration, {"half": True}, "editing.acceleration")
