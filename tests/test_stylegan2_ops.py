"""Fast paths of the ops against their reference forms, and the FIR filter's separable cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hairclipv2.models.stylegan2 import ops
from hairclipv2.models.stylegan2.layers import make_kernel


@pytest.mark.parametrize(
    "up, down, pad",
    [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (0, 0)), (1, 1, (-1, 3)), (4, 1, (3, 2)), (2, 1, (5, -2))],
)
def test_upfirdn2d_fast_matches_reference(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    kernel = torch.randn(4, 3, dtype=torch.float64)  # asymmetric and not square: catches a missing flip
    ref = ops.upfirdn2d_ref(x, kernel, up, down, pad)
    fast = ops.upfirdn2d_fast(x, kernel, up, down, pad)
    assert ref.shape == (2, 3, (9 * up + sum(pad) - 4) // down + 1, (9 * up + sum(pad) - 3) // down + 1)
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)


def test_upfirdn2d_reference_is_a_true_convolution():
    """An impulse through an asymmetric kernel comes out as the kernel itself (not flipped)."""
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    kernel = torch.arange(9.0).reshape(3, 3)
    y = ops.upfirdn2d_ref(x, kernel, pad=(1, 1))
    torch.testing.assert_close(y[0, 0, 1:4, 1:4], kernel)


def test_upsampling_preserves_a_constant_and_zero_inserts():
    x = torch.ones(1, 1, 6, 6)
    k = make_kernel([1, 3, 3, 1]) * 4
    y = ops.upfirdn2d_ref(x, k, up=2, pad=(2, 1))
    assert y.shape == (1, 1, 12, 12)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8))


@pytest.mark.parametrize("form", ["grouped", "scaled"])
@pytest.mark.parametrize("up, demodulate", [(1, True), (1, False), (2, True)])
def test_modulated_conv_fast_forms_match_reference(form, up, demodulate):
    """Both fast forms give the reference's output and the same gradients for x, weight and styles."""
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 6, 6), torch.randn(4, 5, 3, 3), torch.randn(3, 5)
    fn = ops.modulated_conv2d_grouped if form == "grouped" else ops.modulated_conv2d_scaled
    outputs, grads = [], []
    for op in (ops.modulated_conv2d_ref, fn):
        inputs = [t.clone().requires_grad_(True) for t in (x, weight, styles)]
        y = op(*inputs, demodulate, up)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outputs.append(y.detach())
        grads.append([t.grad for t in inputs])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for fast_grad, ref_grad in zip(grads[1], grads[0]):
        torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_fast_modulated_conv_scales_for_a_frozen_weight_and_groups_a_large_trained_one():
    """A frozen weight (inversion, editing) always takes the scaled form; a weight in training takes
    it only while the activations are not much larger than the per-sample weights."""
    frozen = torch.randn(8, 8, 3, 3)
    trained = frozen.clone().requires_grad_(True)
    large, small = torch.randn(1, 8, 64, 64), torch.randn(1, 8, 4, 4)
    assert ops.scales_activations(large, frozen, up=1)
    assert ops.scales_activations(small, trained, up=2)
    assert not ops.scales_activations(large, trained, up=1)
    with torch.no_grad():
        assert ops.scales_activations(large, trained, up=1)


def test_modulated_conv_reference_follows_the_formula():
    """Sample 1 of the reference equals a plain conv with w * s, demodulated by hand."""
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    w = weight * styles[1].view(1, 4, 1, 1)
    w = w / torch.sqrt(w.pow(2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
    torch.testing.assert_close(ops.modulated_conv2d_ref(x, weight, styles)[1:], F.conv2d(x[1:], w, padding=1))


def test_fused_leaky_relu():
    x, b = torch.tensor([[-1.0, 2.0]]), torch.tensor([0.5, -3.0])
    torch.testing.assert_close(ops.fused_leaky_relu(x, b), torch.tensor([[-0.5 * 0.2, -1.0 * 0.2]]) * math.sqrt(2))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        ops.fused_leaky_relu(x, torch.zeros(3))


def test_implementation_switch_rejects_unknown_names():
    assert ops.current() == "fast"
    with ops.implementation("ref"):
        assert ops.current() == "ref"
    with pytest.raises(ValueError, match="'cuda'"):
        with ops.implementation("cuda"):
            pass
