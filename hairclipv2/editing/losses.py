"""The losses of HairCLIPv2's proxies, per sample (N,) so that batched optimisation equals one-by-one.

- CLIPLoss (`criteria/clip_loss.py`): 1 - cos(image, text) of CLIP ViT-B/32 on the image upsampled x7
  and average-pooled to 224; AugCLIPLoss: the spherical distance, averaged over the image and 7
  augmented copies (kornia RandomAffine(15, 0.1) and RandomPerspective(0.7), p = 0.7).
- StyleLoss (`criteria/style`): Gram matrices of VGG16 relu1_2, relu2_2, relu3_3, relu4_3 of the
  hair-masked images at 256 px, L2, averaged over the layers.
- BackgroundLoss: MSE outside the hair of both images (parser at 1024, hair = 10).
- AvgLabLoss: L1 between the average Lab colour of the hair regions (or of a given RGB value).
- LandmarkLoss: FAN (face_alignment) landmarks when that package and its weights are installed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import masks as M
from ..losses.frozen import FrozenNetwork
from ..sharing import borrow
from ..weights import MissingCheckpointError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPModel(FrozenNetwork):
    """OpenAI's CLIP ViT-B/32 through open_clip (HairCLIPv2: `clip.load("ViT-B/32")`); text embeddings
    are cached per string. OpenAI's network uses QuickGELU, which open_clip builds only under the
    `-quickgelu` name (plain `ViT-B-32` is GELU: another function with the same weights)."""

    def __init__(self, name: str = "ViT-B-32-quickgelu", pretrained: str | None = "openai"):
        super().__init__()
        import open_clip

        if pretrained is None:
            warnings.warn(f"CLIP {name} with random weights: CLIP losses and scores are meaningless", stacklevel=2)
        try:
            self.model = open_clip.create_model(name, pretrained=pretrained)
        except Exception as exc:  # offline without the cached file, or a bad path
            raise MissingCheckpointError(
                f"CLIP {name} weights {pretrained!r} could not be loaded ({type(exc).__name__}: {exc}). Put the OpenAI ViT-B-32 (quickgelu) "
                "checkpoint in open_clip's cache (HF hub timm/vit_base_patch32_clip_224.openai) or set editing.clip_pretrained to a "
                "local file; tests and demos can use pretrained=None"
            ) from exc
        self.tokenizer = open_clip.get_tokenizer(name)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self._text_cache: dict[str, torch.Tensor] = {}
        self.freeze()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised text embeddings (N, D), cached per string."""
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"text conditions must be non-empty strings, got {t!r}")
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            with torch.no_grad():
                emb = self.model.encode_text(self.tokenizer(missing).to(self.mean.device)).float()
            self._text_cache.update(zip(missing, emb))
        return torch.stack([self._text_cache[t].to(self.mean.device) for t in texts])

    def encode_image(self, images01: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings of (N, 3, 224, 224) images in [0, 1]."""
        return self.model.encode_image((images01 - self.mean) / self.std).float()


def clip_input(images: torch.Tensor) -> torch.Tensor:
    """HairCLIPv2's resize to 224: nearest x7 upsampling, then average pooling (32 at 1024 px)."""
    size = images.shape[-1]
    if (size * 7) % 224:
        return F.interpolate(images, size=224, mode="bilinear", align_corners=False, antialias=True)
    return F.avg_pool2d(F.interpolate(images, scale_factor=7, mode="nearest"), size * 7 // 224)


class CLIPLoss(nn.Module):
    """1 - cos(CLIP(image), CLIP(text)) per sample; `augment` switches to AugCLIPLoss."""

    def __init__(self, clip: CLIPModel, augment: bool = False, n_augmentations: int = 8, p: float = 0.7):
        super().__init__()
        borrow(self, clip=clip)
        self.augment, self.n = augment, n_augmentations
        if augment:
            import kornia.augmentation as K

            self.augmentations = nn.Sequential(
                K.RandomAffine(degrees=15, translate=0.1, p=p, padding_mode="border"), K.RandomPerspective(0.7, p=p)
            )

    def forward(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """images (N, 3, H, W) in [-1, 1], one text per image -> (N,)."""
        if len(texts) != images.shape[0]:
            raise ValueError(f"one text per image: got {len(texts)} texts for {images.shape[0]} images")
        text = F.normalize(self.clip.encode_text(list(texts)), dim=-1)
        if not self.augment:
            image = F.normalize(self.clip.encode_image(clip_input((images + 1) / 2)), dim=-1)
            return 1 - (image * text).sum(-1)
        small = F.adaptive_avg_pool2d(images, 224)
        copies = torch.cat(
            [small, self.augmentations(small.repeat(self.n - 1, 1, 1, 1))]
        )  # the first copy is not augmented
        emb = F.normalize(self.clip.encode_image((copies + 1) / 2), dim=-1).view(self.n, images.shape[0], -1)
        dist = (emb - text.unsqueeze(0)).norm(dim=-1).div(2).arcsin().pow(2).mul(2)
        return dist.mean(0)


class VGG16Activations(FrozenNetwork):
    """torchvision VGG16 `features` at the given layer indices (3, 8, 15, 22: relu1_2..relu4_3).

    The whole `features` stack is kept so that torchvision's (and HairCLIPv2's) `features.*` state
    dict loads strictly; the forward stops after the deepest requested layer. Inputs go in as
    given: HairCLIPv2 feeds [-1, 1] images without ImageNet normalisation.
    """

    def __init__(self, layers: Sequence[int] = (3, 8, 15, 22), random_weights: bool = False):
        super().__init__()
        import torchvision

        from ..losses.lpips_loss import backbone_file

        if random_weights:
            warnings.warn("VGG16 with random weights: style losses are meaningless", stacklevel=2)
            vgg = torchvision.models.vgg16(weights=None)
        else:
            path = backbone_file("vgg")
            if not path.is_file():
                raise MissingCheckpointError(
                    f"the style loss needs torchvision's VGG16 ImageNet weights {path.name} in {path.parent} (set TORCH_HOME)"
                )
            vgg = torchvision.models.vgg16(weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
        self.features = vgg.features
        if max(layers) >= len(self.features):
            raise ValueError(f"VGG16 features has {len(self.features)} layers, asked for layer {max(layers)}")
        self.layers = tuple(sorted(layers))
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features[: self.layers[-1] + 1]):
            x = layer(x)
            if i in self.layers:
                out.append(x)
        return out


def gram(x: torch.Tensor) -> torch.Tensor:
    """Per-sample Gram matrices (N, C, C) / (C H W) (HairCLIPv2's `gram_matrix` for each sample alone)."""
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def mask_like(feature: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HairCLIPv2's `prepare_mask`: the mask (N, 1, H, H) resized to the feature by NEAREST
    interpolation with scale factor h / H (the feature's size over the mask's)."""
    return F.interpolate(mask, scale_factor=feature.shape[-2] / mask.shape[-2], mode="nearest")


class StyleLoss(nn.Module):
    """HairCLIPv2's masked Gram-matrix style loss (`criteria/transfer_loss.py`, `criteria/style`).

    `forward(target, image, target_mask, image_mask)` multiplies each image by its mask, resizes
    both to 256 px (bilinear, align_corners=True: identity at 256), takes VGG16 activations (the
    target's without gradient), multiplies each activation by its mask resized with `mask_like`,
    and averages over the layers the MSE between the Gram matrices. Per sample (N,); for N = 1 it is
    the official value exactly (the official Gram matrix mixes the samples of a batch; this one does not).
    """

    size = 256

    def __init__(self, vgg: VGG16Activations):
        super().__init__()
        borrow(self, vgg=vgg)

    def to_size(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] == self.size:
            return images
        return F.interpolate(images, scale_factor=self.size / images.shape[-2], mode="bilinear", align_corners=True)

    def forward(
        self, target: torch.Tensor, image: torch.Tensor, target_mask: torch.Tensor, image_mask: torch.Tensor
    ) -> torch.Tensor:
        """target/image (N, 3, H, H) in [-1, 1], masks (N, 1, H, H) in {0, 1} -> (N,)."""
        if (
            target.shape != image.shape
            or target_mask.shape != image_mask.shape
            or target_mask.shape[-2:] != target.shape[-2:]
        ):
            raise ValueError(
                f"StyleLoss: images {tuple(target.shape)}, {tuple(image.shape)} and masks {tuple(target_mask.shape)}, {tuple(image_mask.shape)} must match"
            )
        with torch.no_grad():
            feats_t = self.vgg(self.to_size(target * target_mask))
        feats_i = self.vgg(self.to_size(image * image_mask))
        loss = 0.0
        for ft, fi in zip(feats_t, feats_i):
            loss = loss + (gram(ft * mask_like(ft, target_mask)) - gram(fi * mask_like(fi, image_mask))).pow(2).mean(
                dim=(1, 2)
            )
        return loss / len(feats_t)


class BackgroundLoss(nn.Module):
    """MSE between x and x_hat where neither is hair, per sample."""

    def __init__(self, parser: nn.Module, label_map: M.LabelMap = M.HAIRCLIPV2_16):
        super().__init__()
        borrow(self, parser=parser)
        self.label_map = label_map

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, x_hair: torch.Tensor | None = None) -> torch.Tensor:
        """`x_hair`: x's hair mask when already known (x is fixed during an optimisation)."""
        x_hair = M.parser_hair(self.parser, x, self.label_map) if x_hair is None else x_hair
        keep = (1 - x_hair) * (1 - M.parser_hair(self.parser, x_hat, self.label_map))
        return (x * keep - x_hat * keep).pow(2).mean(dim=(1, 2, 3))


RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)


def rgb_to_lab(rgb01: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> CIE Lab (D65 white normalised as in HairCLIPv2's AvgLabLoss)."""
    m = RGB_TO_XYZ.to(rgb01)
    xyz = torch.einsum("nc,bchw->bnhw", m, rgb01) / m.sum(1).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12).pow(1 / 3), 7.787 * xyz + 0.137931)
    lightness = torch.where(xyz[:, 1] > 0.008856, 116 * f[:, 1] - 16, 903.3 * xyz[:, 1])
    return torch.stack([lightness, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (N, C, H, W) over mask (N, 1, H, W) -> (N, C); an empty mask gives the plain sum (0)."""
    return (x * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp_min(1)


class AvgLabLoss(nn.Module):
    """L1 between average Lab colours: of the target's hair (a reference image) or of a colour
    (N, 3, 1, 1) in [-1, 1], and of the result's hair."""

    def __init__(self, parser: nn.Module, label_map: M.LabelMap = M.HAIRCLIPV2_16):
        super().__init__()
        borrow(self, parser=parser)
        self.label_map = label_map

    def hair_lab(self, images: torch.Tensor) -> torch.Tensor:
        """Average Lab colour (N, 3) of the hair of images (N, 3, H, W), or of 1x1 colour images."""
        lab = rgb_to_lab((images + 1) / 2)
        if images.shape[-1] == 1:
            return lab.flatten(1)
        return masked_mean(lab, M.parser_hair(self.parser, images, self.label_map))

    def forward(
        self, target: torch.Tensor | None, result: torch.Tensor, target_lab: torch.Tensor | None = None
    ) -> torch.Tensor:
        """HairCLIPv2's (target, result) call; `target_lab` replaces the target when already known."""
        if target_lab is None:
            if target is None:
                raise ValueError("AvgLabLoss needs a target image or its target_lab")
            target_lab = self.hair_lab(target)
        return (target_lab - self.hair_lab(result)).abs().mean(dim=1)


class LandmarkLoss(nn.Module):
    """MSE between FAN landmark heatmaps of the source and of a proxy (HairCLIPv2's kp loss).

    `fan`: the 3D FAN-4 (`models.landmarks.load_fan`), or None to switch the term off (a variant: the
    proxies then keep the pose only through their other terms). HairCLIPv2 feeds
    `((interpolate(img, 256) + 1) / 2).clamp(0, 1)` (nearest) and compares all 68 heatmaps
    (reference proxy) or the jaw (0..16) and nose (27..35) groups, one MSE per group, summed (text proxy).
    """

    def __init__(self, fan: nn.Module | None, groups: Sequence[Sequence[int]] | None = None):
        super().__init__()
        self.groups = [list(g) for g in groups] if groups is not None else None  # one MSE per group, summed
        borrow(self, fan=fan)

    @property
    def available(self) -> bool:
        return self.fan is not None

    def heatmaps(self, images: torch.Tensor) -> torch.Tensor | None:
        """FAN heatmaps (N, 68, 64, 64) of images in [-1, 1] (None without FAN)."""
        if self.fan is None:
            return None
        return self.fan(((F.interpolate(images, size=(256, 256)) + 1) / 2).clamp(0, 1))

    def forward(self, source_heatmaps: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
        if self.fan is None or source_heatmaps is None:
            return images.new_zeros(images.shape[0])
        gen = self.heatmaps(images)
        groups = self.groups or [list(range(gen.shape[1]))]
        return sum((gen[:, g] - source_heatmaps[:, g]).pow(2).mean(dim=(1, 2, 3)) for g in groups)


def hair_mask_loss(
    parser: nn.Module, images: torch.Tensor, painted_labels: torch.Tensor, label_map: M.LabelMap = M.HAIRCLIPV2_16
) -> torch.Tensor:
    """HairCLIPv2's painted-mask loss: cross-entropy of the parser's H/2 logits against painted labels,
    weighted 1 on background, face, ear and hair and 0 elsewhere; per sample (N,)."""
    logits = parser(images)[1]
    weight = torch.zeros(label_map.n_classes, device=images.device)
    for name in ("background", "face", "ear", "hair"):
        if name in label_map.classes:
            weight[label_map.classes[name]] = 1
    if painted_labels.shape[-1] != logits.shape[-1]:
        painted_labels = F.interpolate(painted_labels[:, None].float(), size=logits.shape[-2:], mode="nearest")[
            :, 0
        ].long()
    ce = F.cross_entropy(logits, painted_labels, weight=weight, reduction="none")
    w = weight[painted_labels]
    return (ce * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp_min(1)
