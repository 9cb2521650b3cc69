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


@pytest.mark.parametrize("up, demodulate", [(1, True), (1, False), (2, True)])
def test_modulated_conv_fast_matches_reference(up, demodulate):
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 5, 6, 6), torch.randn(4, 5, 3, 3), torch.randn(3, 5)
    ref = ops.modulated_conv2d_ref(x, weight, styles, demodulate, up)
    fast = ops.modulated_conv2d_fast(x, weight, styles, demodulate, up)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


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
