"""e4e's identity loss, also the project's identity-similarity metric.

Features (ir_se50, the official): crop the 256 px face to rows 35:223, cols 32:220, average-pool to
112, IR-SE50, L2-normalise. loss = mean_i (1 - <f(y_hat_i), f(y_i)>), target features detached.
`backbone="facenet"` swaps in facenet-pytorch's InceptionResnetV1 (VGGFace2) on the same crop at 160 px.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.encoders import Backbone
from ..models.encoders.irse import check_images
from ..models.frozen import FrozenNetwork
from ..weights import load_checkpoint_file, load_state_dict_strict

FACE_CROP = (35, 223, 32, 220)  # rows, cols of e4e's crop of a 256 px aligned face
BACKBONES = {"ir_se50": 112, "facenet": 160}


@dataclass
class IDComparison:
    """What e4e's IDLoss reports: loss, sim_improvement and the per-sample cosines."""

    loss: torch.Tensor
    sim_improvement: torch.Tensor
    diff_target: torch.Tensor
    diff_input: torch.Tensor
    diff_views: torch.Tensor


class IDLoss(FrozenNetwork):
    """Identity loss / similarity on aligned faces in [-1, 1] (256 px; other sizes are pooled to 256).

    Args:
        backbone: "ir_se50" (official, `model_ir_se50.pth`) or "facenet" (InceptionResnetV1).
        weights: path of the backbone's weights file.
        random_weights: skip loading (tests, demos): the numbers are then meaningless.
    """

    def __init__(self, backbone: str = "ir_se50", weights: str | Path | None = None, random_weights: bool = False):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"identity backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        self.backbone, self.input_size = backbone, BACKBONES[backbone]
        if backbone == "ir_se50":
            self.net = Backbone(input_size=112, num_layers=50, mode="ir_se", drop_ratio=0.6)
        else:
            from facenet_pytorch import InceptionResnetV1

            self.net = InceptionResnetV1(pretrained=None, classify=False)
        if random_weights:
            warnings.warn(f"IDLoss({backbone}) uses random weights: identity numbers are meaningless", stacklevel=2)
        else:
            state = load_checkpoint_file(weights, backbone)
            if backbone == "facenet":  # the release file also holds the classifier head
                state = {k: v for k, v in state.items() if not k.startswith("logits.")}
            load_state_dict_strict(self.net, state, f"{backbone} weights {weights}")
        self.freeze()

    def extract_feats(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-length identity features (N, 512) of faces (N, 3, H, H) in [-1, 1]."""
        check_images(x, None, "IDLoss")
        if x.shape[-1] != 256:
            x = F.adaptive_avg_pool2d(x, 256)
        r0, r1, c0, c1 = FACE_CROP
        x = F.adaptive_avg_pool2d(x[:, :, r0:r1, c0:c1], self.input_size)
        if self.backbone == "facenet":
            x = x * (127.5 / 128.0)  # facenet's (v - 127.5) / 128 on 0..255 pixels
            return F.normalize(self.net(x), dim=1)
        return self.net(x)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample cosine similarity of the identities of a and b, (N,)."""
        return (self.extract_feats(a) * self.extract_feats(b)).sum(dim=1)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """mean(1 - cos(f(y_hat), f(y))), with gradients to y_hat only."""
        target = self.extract_feats(y).detach()
        return (1 - (self.extract_feats(y_hat) * target).sum(dim=1)).mean()

    def compare(self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> IDComparison:
        """e4e's IDLoss(y_hat, y, x): loss plus the similarity improvement over the input x."""
        f_hat, f_y, f_x = self.extract_feats(y_hat), self.extract_feats(y).detach(), self.extract_feats(x)
        diff_target, diff_input, diff_views = (f_hat * f_y).sum(1), (f_hat * f_x).sum(1), (f_y * f_x).sum(1)
        return IDComparison(
            (1 - diff_target).mean(), (diff_target - diff_views).mean().detach(), diff_target, diff_input, diff_views
        )
