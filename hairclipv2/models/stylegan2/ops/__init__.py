"""StyleGAN2 ops in pure PyTorch: each with a reference form and a fast path (see `impl`)."""

from .bias_act import fused_leaky_relu
from .impl import current, implementation
from .modulated_conv import (
    modulated_conv2d,
    modulated_conv2d_fast,
    modulated_conv2d_grouped,
    modulated_conv2d_ref,
    modulated_conv2d_scaled,
    scales_activations,
)
from .upfirdn2d import upfirdn2d, upfirdn2d_fast, upfirdn2d_ref

__all__ = [
    "current",
    "fused_leaky_relu",
    "implementation",
    "modulated_conv2d",
    "modulated_conv2d_fast",
    "modulated_conv2d_grouped",
    "modulated_conv2d_ref",
    "modulated_conv2d_scaled",
    "scales_activations",
    "upfirdn2d",
    "upfirdn2d_fast",
    "upfirdn2d_ref",
]
