"""BiSeNet face parser (Yu et al. 2018) as used by HairCLIPv2 (Barbershop's 16-class `seg.pth`) and
by face-parsing.PyTorch (19-class CelebAMask-HQ `79999_iter.pth`).

Both replace BiSeNet's spatial path by the ResNet-18 1/8 feature. The 19-class model also has the two
auxiliary heads (`conv_out16`, `conv_out32`). Keys match the official files (strict loading).

`forward` is HairCLIPv2's: x (N, 3, H, W) in [-1, 1] -> bicubic 2x downsample -> ImageNet
normalisation -> logits at H/2 (bilinear, align_corners=True from 1/8) -> returns
(AdaptiveAvgPool2d(1024)(logits), logits). `parse` is the plain variant: labels at the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...weights import CheckpointError, load_checkpoint_file, load_state_dict_strict
from .bicubic import BicubicDownSample
from .resnet import Resnet18

UNUSED_PREFIXES = ("sp.", "conv_out16.", "conv_out32.")  # heads the 16-class model never runs
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, in_chan: int, out_chan: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chan, out_chan, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BiSeNetOutput(nn.Module):
    def __init__(self, in_chan: int, mid_chan: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, mid_chan)
        self.conv_out = nn.Conv2d(mid_chan, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.conv = ConvBNReLU(in_chan, out_chan)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, in_chan: int, out_chan: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_chan, out_chan, ks=1, padding=0)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, bias=False)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * atten + feat


class BiSeNet(nn.Module):
    """BiSeNet(n_classes=16): HairCLIPv2's parser; BiSeNet(n_classes=19): face-parsing.PyTorch's.

    `aux_heads` (default: n_classes == 19) adds the auxiliary heads that the 19-class file holds.
    Nothing is downloaded at construction (the official ResNet-18 init fetched ImageNet weights).
    """

    def __init__(self, n_classes: int = 16, aux_heads: bool | None = None):
        super().__init__()
        self.n_classes = n_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        if n_classes == 19 if aux_heads is None else aux_heads:
            self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
            self.conv_out32 = BiSeNetOutput(128, 64, n_classes)
        self.downsample = BicubicDownSample(2)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images -> HairCLIPv2's network input: bicubic /2, ImageNet mean and std."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"BiSeNet expects images (N, 3, H, W) in [-1, 1] with even H and W, got {tuple(x.shape)}")
        return (self.downsample((x + 1) / 2) - self.mean) / self.std

    def head_logits(self, net_input: torch.Tensor) -> torch.Tensor:
        """Logits at 1/8 of the network input (before upsampling), (N, n_classes, h/8, w/8)."""
        feat8, feat_cp8, _ = self.cp(net_input)
        return self.conv_out(self.ffm(feat8, feat_cp8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """HairCLIPv2's call: (logits average-pooled to 1024x1024, logits at H/2 x W/2)."""
        net_input = self.normalise(x)
        logits = F.interpolate(self.head_logits(net_input), net_input.shape[2:], mode="bilinear", align_corners=True)
        return F.adaptive_avg_pool2d(logits, (1024, 1024)), logits

    @torch.no_grad()
    def parse(self, x: torch.Tensor) -> torch.Tensor:
        """Label map (N, H, W) int64 at the input's own size (nearest upsampling of the H/2 labels)."""
        labels = self(x)[1].argmax(dim=1, keepdim=True).float()
        return F.interpolate(labels, x.shape[2:], mode="nearest")[:, 0].long()


def load_parser(path: str | None, n_classes: int = 16) -> BiSeNet:
    """BiSeNet from `seg.pth` (16 classes, paths.weights.bisenet) or `79999_iter.pth` (19 classes,
    paths.weights.bisenet19), in eval mode. Keys of heads this model does not have (a spatial path,
    auxiliary heads) are dropped, as HairCLIPv2's strict=False load ignores them; every other key
    must match."""
    kind = {16: "bisenet", 19: "bisenet19"}.get(n_classes)
    if kind is None:
        raise ValueError(f"n_classes must be 16 (HairCLIPv2) or 19 (CelebAMask-HQ), got {n_classes}")
    state = load_checkpoint_file(path, kind)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    net = BiSeNet(n_classes)
    own = set(net.state_dict())
    state = {k: v for k, v in state.items() if k in own or not k.startswith(UNUSED_PREFIXES)}
    load_state_dict_strict(net, state, f"parser weights {path}")
    return net.eval()
