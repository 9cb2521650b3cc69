"""Modulated convolution with optional demodulation and 2x transposed-conv upsampling (StyleGAN2).

For sample b with style s_b (C_in,) and the scaled weight w (C_out, C_in, k, k):

    w'_b = w * s_b[None, :, None, None]
    w''_b = w'_b / sqrt(sum_{in, kh, kw} w'_b^2 + 1e-8)          (demodulate=True)
    y_b = conv2d(x_b, w''_b, padding=k // 2)                       (up=1)
    y_b = conv_transpose2d(x_b, w''_b, stride=2)                   (up=2; the caller blurs)

Shapes: x (N, C_in, H, W), weight (C_out, C_in, k, k), styles (N, C_in); output (N, C_out, H', W')
with H' = H for up=1 and H' = 2H + k - 2 for up=2 (before the blur crops it to 2H).

The reference form loops over samples. The fast path has two forms (NVlabs' fused and non-fused
modconv), equal up to float32 rounding:

- grouped: the per-sample weights are built and the batch runs as one grouped convolution;
- scaled: x * s_b, one plain convolution with the shared weight, then each output channel times its
  demodulation coefficient. No per-sample weight exists, and when the weight itself needs no
  gradient (a frozen generator, as in every inversion and edit) the style's gradient comes from
  the input gradient instead of a weight-gradient convolution: one convolution less per layer in
  the backward pass.

`modulated_conv2d_fast` scales when the weight needs no gradient or the activations are not much
larger than the per-sample weights (low resolutions); otherwise (training the generator at high
resolution) it groups. benchmarks/generator.py measures both against rosinality's generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import impl

DEMOD_EPS = 1e-8
# Above this activations-to-weights ratio a generator in training groups (measured on a CPU: at
# 64 px config-f the scaled form is 1.1x faster, at 128 px 0.9x).
SCALED_MAX_RATIO = 8.0


def _sample_weights(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """Per-sample modulated (and demodulated) weights, (N, C_out, C_in, k, k)."""
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]
    if demodulate:
        w = w * torch.rsqrt(w.pow(2).sum(dim=[2, 3, 4], keepdim=True) + DEMOD_EPS)
    return w


def modulated_conv2d_ref(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, up: int = 1
) -> torch.Tensor:
    """Reference form: one plain convolution per sample."""
    w = _sample_weights(weight, styles, demodulate)
    outs = []
    for b in range(x.shape[0]):
        if up == 1:
            outs.append(F.conv2d(x[b : b + 1], w[b], padding=weight.shape[-1] // 2))
        else:
            outs.append(F.conv_transpose2d(x[b : b + 1], w[b].transpose(0, 1), stride=2))
    return torch.cat(outs, dim=0)


def _demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / |w'_b| per sample and output channel, (N, C_out).

    sum_{in,kh,kw} (w s)^2 = s^2 @ sum_{kh,kw} w^2: an (N, C_in) x (C_in, C_out) matmul instead of
    squaring the (N, C_out, C_in, k, k) modulated weights.
    """
    return torch.rsqrt(styles.square() @ weight.square().sum(dim=[2, 3]).t() + DEMOD_EPS)


def modulated_conv2d_grouped(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, up: int = 1
) -> torch.Tensor:
    """Per-sample weights, the whole batch as one grouped convolution."""
    n, c_in, h, w_in = x.shape
    c_out, _, k, _ = weight.shape
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]
    if demodulate:
        w = w * _demodulation(weight, styles)[:, :, None, None, None]
    x = x.reshape(1, n * c_in, h, w_in)
    if up == 1:
        y = F.conv2d(x, w.reshape(n * c_out, c_in, k, k), padding=k // 2, groups=n)
    else:
        y = F.conv_transpose2d(x, w.transpose(1, 2).reshape(n * c_in, c_out, k, k), stride=2, groups=n)
    return y.reshape(n, c_out, y.shape[2], y.shape[3])


def modulated_conv2d_scaled(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, up: int = 1
) -> torch.Tensor:
    """Inputs scaled by the styles, one convolution with the shared weight, outputs demodulated."""
    k = weight.shape[-1]
    x = x * styles[:, :, None, None]
    if up == 1:
        y = F.conv2d(x, weight, padding=k // 2)
    else:
        y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    if demodulate:
        y = y * _demodulation(weight, styles)[:, :, None, None]
    return y


def scales_activations(x: torch.Tensor, weight: torch.Tensor, up: int) -> bool:
    """Whether the fast path takes the scaled form: the weight needs no gradient, or the input and
    output activations have at most SCALED_MAX_RATIO times the elements of the per-sample weights."""
    if not (weight.requires_grad and torch.is_grad_enabled()):
        return True
    activations = x[0].numel() * (1 + up * up * weight.shape[0] / weight.shape[1])
    return activations <= SCALED_MAX_RATIO * weight.numel()


def modulated_conv2d_fast(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, up: int = 1
) -> torch.Tensor:
    """Fast path: the scaled or the grouped form, as `scales_activations` chooses."""
    form = modulated_conv2d_scaled if scales_activations(x, weight, up) else modulated_conv2d_grouped
    return form(x, weight, styles, demodulate, up)


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True, up: int = 1
) -> torch.Tensor:
    """Modulated convolution with the implementation chosen by `ops.implementation`."""
    if (
        x.ndim != 4
        or weight.ndim != 4
        or styles.shape != (x.shape[0], weight.shape[1])
        or x.shape[1] != weight.shape[1]
    ):
        raise ValueError(
            f"modulated_conv2d expects x (N, C_in, H, W), weight (C_out, C_in, k, k), styles (N, C_in); "
            f"got x {tuple(x.shape)}, weight {tuple(weight.shape)}, styles {tuple(styles.shape)}"
        )
    if up not in (1, 2):
        raise ValueError(f"modulated_conv2d supports up=1 or up=2, got {up}")
    fn = modulated_conv2d_fast if impl.current() == "fast" else modulated_conv2d_ref
    return fn(x, weight, styles, demodulate, up)
