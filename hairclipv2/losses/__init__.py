"""Every loss of the project, per sample where HairCLIPv2 optimises batches: identity (IR-SE50 or
facenet), LPIPS, e4e's delta regularisation, and HairCLIPv2's CLIP, style, background, colour,
landmark and painted-mask losses. The networks they wrap live in `hairclipv2.models`."""

from .background import BackgroundLoss
from .clip_loss import CLIPLoss
from .colour import AvgLabLoss, rgb_to_lab
from .id_loss import IDComparison, IDLoss
from .landmarks import LandmarkLoss
from .lpips_loss import LPIPSLoss
from .painted_mask import hair_mask_loss
from .regularisation import delta_regularisation
from .style import StyleLoss

__all__ = [
    "AvgLabLoss",
    "BackgroundLoss",
    "CLIPLoss",
    "IDComparison",
    "IDLoss",
    "LPIPSLoss",
    "LandmarkLoss",
    "StyleLoss",
    "delta_regularisation",
    "hair_mask_loss",
    "rgb_to_lab",
]
