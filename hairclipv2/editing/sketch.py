"""HairCLIPv2's sketch proxy (`scripts/sketch_proxy.py`): hair strokes -> the local proxy's W+ and the
region where its features replace the source's.

    strokes (H, W) uint8, 0 = nothing, > 0 = a stroke (HairCLIPv2 draws value 128 on a 512 px canvas)
    codes = SketchEncoder(ToTensor(Resize((256, 256))(PIL strokes))) + mean code      (N, 18, 512)
    mask  = dilate_erode(strokes > 0, 30)                                             (N, 1, H, W)

`FeatureBlender.hairstyle(local_codes=codes, local_mask=mask)` then blends the proxy's F inside the
mask; a sketch can be combined with a global text or reference proxy, as in HairCLIPv2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import pil_to_tensor

from .. import masks as M
from ..models.encoders import SketchEncoder
from ..models.encoders.sketch import OFFICIAL_INPUT
from ..weights import CheckpointError, atomic_torch_save, load_checkpoint_file, load_state_dict_strict, strip_prefix

CHECKPOINT_PREFIX = "encoder_firststage."
# A new layout's settings, stored in the file's opts beside HairCLIPv2's (absent: the official layout).
LAYOUT_KEYS = ("num_layers", "depths", "pool", "input_size", "last_stage")


def sketch_input(strokes: np.ndarray | torch.Tensor, size: int = OFFICIAL_INPUT) -> torch.Tensor:
    """HairCLIPv2's preprocessing of one stroke image (H, W) uint8: PIL bilinear resize to size x size
    (official: 256), then ToTensor (values / 255): (1, 1, size, size) float32."""
    arr = strokes.cpu().numpy() if torch.is_tensor(strokes) else np.asarray(strokes)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"a sketch must be an (H, W) uint8 stroke image, got {arr.shape} {arr.dtype}")
    small = Image.fromarray(arr).resize((size, size), Image.BILINEAR)
    return pil_to_tensor(small).float().div(255).unsqueeze(0)


def sketch_mask(strokes: torch.Tensor, kernel: int | None = M.DILATE_KERNEL_AT_512) -> torch.Tensor:
    """The local blending mask of strokes (N, H, W) or (N, 1, H, W): dilate_erode(strokes > 0), {0, 1}.
    `kernel`: HairCLIPv2's 30 whatever the sketch's size (it draws on 512 px); None scales 30 px at
    512 to the sketch's own size (`masks.dilate_kernel`), for sketches of a smaller world."""
    if strokes.ndim == 3:
        strokes = strokes[:, None]
    return M.dilate_erode((strokes > 0).float(), kernel or M.dilate_kernel(strokes.shape[-1]))


@dataclass
class SketchResult:
    codes: torch.Tensor  # the local proxy's W+ (N, 18, 512)
    mask: torch.Tensor  # where it is blended (N, 1, H, W) in {0, 1}


class SketchProxy(nn.Module):
    """Sketch encoder + the mean code. `mean_code` is (D,) or (n_latent, D): the generator's latent_avg;
    `mask_kernel` the dilation of the strokes' mask (`sketch_mask`)."""

    def __init__(
        self, encoder: SketchEncoder, mean_code: torch.Tensor, mask_kernel: int | None = M.DILATE_KERNEL_AT_512
    ):
        super().__init__()
        self.mask_kernel = mask_kernel
        self.encoder = encoder.requires_grad_(False).eval()
        self.register_buffer("mean_code", mean_code.reshape(-1, mean_code.shape[-1]).clone())

    @torch.no_grad()
    def forward(self, strokes: torch.Tensor) -> SketchResult:
        """strokes (N, H, W) uint8 (HairCLIPv2: 512x512) -> codes and blending masks."""
        if strokes.ndim != 3 or strokes.dtype != torch.uint8:
            raise ValueError(
                f"sketches must be (N, H, W) uint8 stroke images, got {tuple(strokes.shape)} {strokes.dtype}"
            )
        x = torch.cat([sketch_input(s, self.encoder.input_size) for s in strokes]).to(self.mean_code.device)
        codes = self.encoder(x) + self.mean_code
        return SketchResult(codes, sketch_mask(strokes.to(self.mean_code.device), self.mask_kernel))


def load_sketch_encoder(path: str | None, style_dim: int = 512) -> SketchEncoder:
    """HairCLIPv2's `sketch_proxy.pt` ({'state_dict': {'encoder_firststage.*'}, 'opts'}), strictly.
    The number of W+ rows is read from the heads (18 in the official file); a smaller layout's
    settings from `opts` (`LAYOUT_KEYS`, written by `save_sketch_encoder`)."""
    ckpt = load_checkpoint_file(path, "sketch_proxy")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path}: expected {{'state_dict', 'opts'}} (HairCLIPv2's sketch_proxy.pt), found {sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__}"
        )
    state = strip_prefix(ckpt["state_dict"], CHECKPOINT_PREFIX)
    if not state:
        raise CheckpointError(
            f"{path}: no '{CHECKPOINT_PREFIX}*' keys in its state_dict (is it HairCLIPv2's sketch_proxy.pt?)"
        )
    opts = ckpt.get("opts") or {}
    input_nc = int(opts.get("input_nc", state["input_layer.0.weight"].shape[1]))
    outputs = sum(v.shape[0] for k, v in state.items() if k.startswith("output_layer_") and k.endswith(".3.bias"))
    layout = {k: opts[k] for k in LAYOUT_KEYS if k in opts}
    encoder = SketchEncoder(input_nc, style_dim=style_dim, n_latent=outputs // style_dim if outputs else 18, **layout)
    load_state_dict_strict(encoder, state, f"sketch proxy {path}")
    return encoder.eval()


def save_sketch_encoder(encoder: SketchEncoder, path: str | Path) -> Path:
    """The encoder in HairCLIPv2's container (what `load_sketch_encoder` reads), written atomically."""
    state = {CHECKPOINT_PREFIX + k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return atomic_torch_save({"state_dict": state, "opts": {"input_nc": encoder.input_nc, **encoder.layout}}, path)
