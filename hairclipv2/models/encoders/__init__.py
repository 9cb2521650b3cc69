"""Encoders: the IR-SE ArcFace backbone, pSp's GradualStyleEncoder and e4e's Encoder4Editing, HairCLIPv2's sketch encoder."""

from .irse import Backbone
from .psp import INFERENCE_STAGE, Encoder4Editing, GradualStyleEncoder
from .sketch import SketchEncoder

__all__ = ["Backbone", "Encoder4Editing", "GradualStyleEncoder", "INFERENCE_STAGE", "SketchEncoder"]
