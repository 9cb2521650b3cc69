"""upfirdn2d: upsample by zero insertion, pad (negative = crop), FIR filter, downsample.

Semantics are those of StyleGAN2's op (rosinality `upfirdn2d_native`, NVlabs `upfirdn2d`): for each
channel independently,

    y = downsample_d( conv2d_true( pad_p( zero_insert_u(x) ), f ) )

with a true convolution (the kernel is flipped; StyleGAN's kernels are symmetric so it does not
matter in practice). `pad = (p0, p1)` is applied to both axes, as in rosinality's call signature.

Shapes: x (N, C, H, W), f (kh, kw) float; output (N, C, H_out, W_out) with
H_out = (H * up + p0 + p1 - kh) // down + 1.

The reference form folds the channels into the batch and runs a one-channel convolution on the
zero-inserted signal; the fast path is one depthwise convolution (a transposed one when upsampling),
2.5x faster on a CPU (benchmarks/generator.py). Two 1-D passes for the separable kernels were
measured too and lost to the single depthwise pass, so there is no separable path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import impl


def _zero_insert_and_pad(x: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """Zero insertion (sample i lands at i * up, followed by up - 1 zeros) and padding/cropping."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    return x


def upfirdn2d_ref(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Reference form: zero insertion, padding, full 2-D true convolution per channel, decimation."""
    n, c, _, _ = x.shape
    x = _zero_insert_and_pad(x, up, pad)
    weight = kernel.flip([0, 1]).to(x.dtype)[None, None]
    y = F.conv2d(x.reshape(n * c, 1, x.shape[2], x.shape[3]), weight)
    y = y[:, :, ::down, ::down]
    return y.reshape(n, c, y.shape[2], y.shape[3])


def upfirdn2d_fast(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Fast path: one depthwise convolution (groups=C) over the channels in place.

    Upsampling is a depthwise transposed convolution with stride `up` (the full convolution of the
    zero-inserted signal, without building it), cropped or padded to the reference's window;
    downsampling without upsampling is the convolution's stride.
    """
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    if up == 1:
        x = F.pad(x, [p0, p1, p0, p1])  # negative values crop
        weight = kernel.flip([0, 1]).to(x.dtype).expand(c, 1, kh, kw)
        return F.conv2d(x, weight, stride=down, groups=c)
    weight = kernel.to(x.dtype).expand(c, 1, kh, kw)
    y = F.conv_transpose2d(x, weight, stride=up, groups=c)
    # y is the full convolution of the zero-inserted input; the reference's output starts k-1-p0 later.
    out_h, out_w = h * up + p0 + p1 - kh + 1, w * up + p0 + p1 - kw + 1
    left_h, left_w = p0 - (kh - 1), p0 - (kw - 1)
    y = F.pad(y, [left_w, out_w - left_w - y.shape[3], left_h, out_h - left_h - y.shape[2]])
    return y[:, :, ::down, ::down] if down > 1 else y


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """upfirdn2d with the implementation chosen by `ops.implementation`."""
    if x.ndim != 4 or kernel.ndim != 2:
        raise ValueError(
            f"upfirdn2d expects x (N, C, H, W) and a 2-D kernel, got x {tuple(x.shape)}, kernel {tuple(kernel.shape)}"
        )
    fn = upfirdn2d_fast if impl.current() == "fast" else upfirdn2d_ref
    return fn(x, kernel, up, down, pad)
