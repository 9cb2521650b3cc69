"""Face parsing: the BiSeNet of HairCLIPv2 (16 classes) and face-parsing.PyTorch (19 classes)."""

from .bisenet import BiSeNet, load_parser

__all__ = ["BiSeNet", "load_parser"]
