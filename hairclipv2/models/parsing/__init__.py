"""Face parsing: the BiSeNet of HairCLIPv2 (16 classes) and face-parsing.PyTorch (19 classes), and
the hair segmenter every part of the editor asks for hair masks."""

from .bisenet import BiSeNet, load_parser
from .segmenter import HairSegmenter

__all__ = ["BiSeNet", "HairSegmenter", "load_parser"]
