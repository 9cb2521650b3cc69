"""Split forward semantics of the generator: split == full, gradients through a resume, bad input."""

from __future__ import annotations

import pytest
import torch

from hairclipv2.models.stylegan2 import Generator


@pytest.fixture()
def wplus(tiny_generator):
    torch.manual_seed(1)
    return torch.randn(2, tiny_generator.n_latent, tiny_generator.style_dim)


def test_split_then_resume_equals_full_forward_for_every_block(tiny_generator, wplus):
    G = tiny_generator
    with torch.no_grad():
        full = G.synthesis(wplus)
        for k in range(G.n_blocks):
            feature, skip = G.features(wplus, end_layer=k)
            assert feature.shape[1:] == G.feature_shape(k)
            assert torch.equal(G.resume(wplus, k + 1, feature, skip), full), f"split at block {k}"


def test_named_api_matches_hairclipv2_call(tiny_generator, wplus):
    G = tiny_generator
    with torch.no_grad():
        feature, skip = G.features(wplus, end_layer=2)
        f2, s2 = G([wplus], input_is_latent=True, randomize_noise=False, end_layer=2)
        assert torch.equal(feature, f2) and torch.equal(skip, s2)
        no_skip = G.resume(wplus, 3, feature)
        assert torch.equal(
            no_skip, G([wplus], input_is_latent=True, randomize_noise=False, start_layer=3, layer_in=feature)[0]
        )
        assert not torch.allclose(no_skip, G.synthesis(wplus), atol=1e-3)


def test_fixed_and_random_noise(tiny_generator, wplus):
    G = tiny_generator
    with torch.no_grad():
        assert torch.equal(G.synthesis(wplus), G.synthesis(wplus))
        a = G.synthesis(wplus, randomize_noise=True)
        b = G.synthesis(wplus, randomize_noise=True)
    assert not torch.equal(a, b)


def test_gradients_reach_codes_and_outside_feature(tiny_generator, wplus):
    G = tiny_generator
    feature, skip = G.features(wplus, end_layer=1)
    feature = feature.detach().requires_grad_(True)
    w = wplus.clone().requires_grad_(True)
    G.resume(w, 2, feature).square().mean().backward()
    assert feature.grad is not None and feature.grad.abs().sum() > 0
    # Rows 3.. drive blocks 2..4 (and the ToRGB of block 1 is skipped); rows 0..2 are unused after block 1.
    assert w.grad[:, 3:].abs().sum() > 0
    assert torch.all(w.grad[:, :3] == 0)


def test_block_geometry_of_the_1024_config():
    G = Generator(1024, 512, 8).requires_grad_(False)
    assert (G.n_latent, G.num_layers, G.n_blocks) == (18, 17, 8)
    assert G.feature_shape(3) == (512, 32, 32)
    assert G.feature_shape(6) == (128, 256, 256)
    assert sum(p.numel() for p in G.parameters()) == 30_370_060  # rosinality's config-f g_ema


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda G, w: G.synthesis(w[:, :5]), r"W\+ codes must have shape \(N, 10, 64\), got \(2, 5, 64\)"),
        (lambda G, w: G.synthesis(torch.randn(2, 10, 32)), r"\(N, 10, 64\), got \(2, 10, 32\)"),
        (lambda G, w: G.features(w, end_layer=5), r"end_layer must be an int in \[0, 4\].*got 5"),
        (lambda G, w: G.features(w, end_layer=-1), r"end_layer must be an int in \[0, 4\]"),
        (lambda G, w: G.resume(w, 0, torch.zeros(2, 64, 4, 4)), r"start_layer >= 1"),
        (
            lambda G, w: G.resume(w, 2, torch.zeros(2, 64, 16, 16)),
            r"feature must have shape \(2, 64, 8, 8\), got \(2, 64, 16, 16\)",
        ),
        (
            lambda G, w: G.resume(w, 2, torch.zeros(2, 64, 8, 8), torch.zeros(2, 3, 4, 4)),
            r"skip must have shape \(2, 3, 8, 8\)",
        ),
        (lambda G, w: G.run_blocks(w, 3, 2), r"start_layer \(3\) must not exceed end_layer \(2\)"),
        (lambda G, w: G([w], input_is_latent=True, start_layer=2), r"needs the feature of block 1"),
        (lambda G, w: G([torch.randn(2, 7)]), r"z must have shape \(N, 64\), got \(2, 7\)"),
        (lambda G, w: G.synthesis(w, noise=[None] * 3), r"list of 9 tensors"),
    ],
)
def test_bad_input_gets_value_error(tiny_generator, wplus, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_generator, wplus)


def test_bad_construction():
    with pytest.raises(ValueError, match="power of two"):
        Generator(100, 64, 2)
    with pytest.raises(ValueError, match=r"no width for resolutions \[2048\]"):
        Generator(2048, 64, 2)
