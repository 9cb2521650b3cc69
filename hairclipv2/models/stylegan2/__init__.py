"""StyleGAN2 generator (rosinality-compatible weights) with HairCLIPv2's split forward."""

from .generator import Generator, default_channels

__all__ = ["Generator", "default_channels"]
