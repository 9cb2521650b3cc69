"""StyleGAN inversion (e4e) and hair editing (HairCLIPv2) on one split StyleGAN2 generator."""

__version__ = "0.1.0"
