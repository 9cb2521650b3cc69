"""Feature blending on the split generator: the one place where every hair edit mixes features.

HairCLIPv2 (Wei et al. 2023), `scripts/feature_blending.py`. With F the feature after block
`hairstyle_block` (block 3: 32x32x512 at 1024 px) and C the feature after `colour_block` (block 6:
256x256x128 at 1024 px):

hairstyle   F = F_bald * M_bald + F * (1 - M_bald)        M_bald = bicubic(dilate_erode(hair | ear of the source))
            F = F_glob * M_glob + F * (1 - M_glob)        M_glob = bicubic(hair of the global proxy's image)
            F = F_loc  * M_loc  + F * (1 - M_loc)         M_loc  = bicubic(the user's local mask)
            image = G.resume(w_src, hairstyle_block + 1, F)
colour      C_src, C_col = blocks hairstyle_block+1..colour_block of (w_src, F) and (w_colour, F)
            C = C_col * M_c + C_src * (1 - M_c)           M_c = bicubic(nearest(dilate_erode(hair of the edited image)))
update_on_FS  F' = F(w_new) + (F_blend - F(w_src)); image = G.resume(w_src, hairstyle_block + 1, F')

Masks are resized to the feature's resolution with HairCLIPv2's unclamped bicubic. Official
behaviour kept by default: the proxies' features are computed with fresh noise
(`randomize_proxy_noise=True`) and every resume leaves out the RGB skip (`resume_with_skip=False`;
True adds the source's skip, the cleaner variant). All functions take batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import masks as M
from .models.parsing import HairSegmenter
from .models.stylegan2 import Generator
from .sharing import borrow


def blend(inside: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """inside * mask + outside * (1 - mask); mask (N, 1, h, w) is resized (bicubic) to the features."""
    if inside.shape != outside.shape:
        raise ValueError(
            f"features to blend must have the same shape, got {tuple(inside.shape)} and {tuple(outside.shape)}"
        )
    if mask.shape[-1] != inside.shape[-1]:
        mask = M.resize_mask(mask, inside.shape[-1])
    return inside * mask + outside * (1 - mask)


@dataclass
class HairstyleBlend:
    feature: torch.Tensor  # blended F (N, C, h, h)
    image: torch.Tensor  # resumed with the source's codes (N, 3, H, H)
    bald_mask: torch.Tensor | None  # (N, 1, L, L) label-resolution masks, before resizing
    global_mask: torch.Tensor | None
    local_mask: torch.Tensor | None


class FeatureBlender(nn.Module):
    """Blends proxy features into a source's (F, S) on one generator and parser.

    Args:
        generator: the split generator (frozen).
        segmenter: the face parser and its classes.
        hairstyle_block: the block whose output is F (3 at 1024 px).
        colour_block: the block whose output is blended for colour (6 at 1024 px).
        dilate_kernel: HairCLIPv2's 30 at 512 px labels; None scales it to the label resolution.
    """

    def __init__(
        self,
        generator: Generator,
        segmenter: HairSegmenter,
        hairstyle_block: int = 3,
        colour_block: int = 6,
        dilate_kernel: int | None = None,
        randomize_proxy_noise: bool = True,
        resume_with_skip: bool = False,
    ):
        super().__init__()
        if not 0 <= hairstyle_block < colour_block < generator.n_blocks:
            raise ValueError(
                f"need 0 <= hairstyle_block < colour_block < {generator.n_blocks}, got {hairstyle_block}, {colour_block}"
            )
        borrow(self, generator=generator, segmenter=segmenter)  # owned by the pipeline (sharing.py)
        self.hairstyle_block, self.colour_block = hairstyle_block, colour_block
        self.dilate_kernel = dilate_kernel
        self.randomize_proxy_noise, self.resume_with_skip = randomize_proxy_noise, resume_with_skip

    # ------------------------------------------------------------------------------ helpers
    def kernel(self, resolution: int) -> int:
        return self.dilate_kernel if self.dilate_kernel is not None else M.dilate_kernel(resolution)

    def proxy_feature(self, codes: torch.Tensor) -> torch.Tensor:
        """F of a proxy's W+ codes (fresh noise by default, as HairCLIPv2)."""
        return self.generator.features(codes, self.hairstyle_block, randomize_noise=self.randomize_proxy_noise)[0]

    def resume(self, src_codes: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """The image from F with the source's codes (fixed noise; with `resume_with_skip`, plus the
        RGB skip of the source's codes)."""
        return self.generator.resume_from_feature(src_codes, self.hairstyle_block, feature, self.resume_with_skip)

    # ---------------------------------------------------------------------------- hairstyle
    def hairstyle(
        self,
        src_codes: torch.Tensor,
        src_feature: torch.Tensor,
        src_labels: torch.Tensor,
        bald_codes: torch.Tensor | None = None,
        global_codes: torch.Tensor | None = None,
        local_codes: torch.Tensor | None = None,
        local_mask: torch.Tensor | None = None,
    ) -> HairstyleBlend:
        """Blend the bald, global (text / reference) and local proxies into the source's F.

        src_labels: the source's parser labels (N, 1, L, L) (HairCLIPv2's `visual_mask`);
        local_mask: (N, 1, L', L') in {0, 1}, where the local proxy replaces the features.
        As HairCLIPv2, the bald and global proxies are blended only when a global proxy is given.
        """
        feature, bald_mask, global_mask = src_feature, None, None
        if global_codes is not None:
            if bald_codes is None:
                raise ValueError("a global hairstyle proxy needs the bald proxy's codes (bald_codes)")
            bald_mask = M.dilate_erode(self.segmenter.hair_and_ears(src_labels), self.kernel(src_labels.shape[-1]))
            feature = blend(self.proxy_feature(bald_codes), feature, bald_mask)
            with torch.no_grad():
                global_image = self.generator.synthesis(global_codes)
            global_mask = self.segmenter.hair_of_labels(self.segmenter.labels(global_image))
            feature = blend(self.proxy_feature(global_codes), feature, global_mask)
        if local_codes is not None:
            if local_mask is None:
                raise ValueError("a local proxy needs local_mask (N, 1, H, W)")
            feature = blend(self.proxy_feature(local_codes), feature, (local_mask == 1).float())
        with torch.no_grad():
            image = self.resume(src_codes, feature)
        return HairstyleBlend(feature, image, bald_mask, global_mask, local_mask)

    # ------------------------------------------------------------------------------- colour
    def colour_hair_mask(self, edited_image: torch.Tensor) -> torch.Tensor:
        """HairCLIPv2's `final_hair_mask`: the enlarged hair of the edited image at image size, {0, 1}."""
        return self.colour_hair_masks(edited_image)[1]

    def colour_hair_masks(self, edited_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(parsed hair, HairCLIPv2's enlarged hair) of the edited image at image size, {0, 1}, from
        one parse."""
        hair = self.segmenter.hair_of_labels(self.segmenter.labels(edited_image))
        enlarged = M.dilate_erode(hair, self.kernel(hair.shape[-1]))
        size = edited_image.shape[-1]
        return M.resize_mask(hair, size, mode="nearest"), M.resize_mask(enlarged, size, mode="nearest")

    def colour_feature(self, codes: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """The feature after colour_block from F, with fixed noise."""
        return self.colour_parts(codes, feature)[0]

    def colour(
        self,
        edited_image: torch.Tensor,
        src_codes: torch.Tensor,
        colour_codes: torch.Tensor,
        feature: torch.Tensor,
        hair_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(blended colour feature, final hair mask at image size): the colour proxy's feature inside
        the enlarged hair of the hairstyle-edited image (or `hair_mask`), the source's outside."""
        blended, _, hair_mask = self.colour_with_skip(edited_image, src_codes, colour_codes, feature, hair_mask)
        return blended, hair_mask

    def colour_with_skip(
        self,
        edited_image: torch.Tensor,
        src_codes: torch.Tensor,
        colour_codes: torch.Tensor,
        feature: torch.Tensor,
        hair_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(blended colour feature, blended RGB skip, final hair mask): `colour` with the RGB skip
        after colour_block blended too (ours, the amortised path). Resumed with the source's codes
        (`colour_resume(src_codes, feature, skip)`), it is the source's picture outside the hair,
        so HairCLIPv2's final optimisation, which repairs the skip its resume leaves out, starts
        from the answer it seeks."""
        hair_mask = self.colour_hair_mask(edited_image) if hair_mask is None else hair_mask
        source = self.colour_parts(src_codes, feature)
        return (*self.blend_colour(self.colour_parts(colour_codes, feature), source, hair_mask), hair_mask)

    def colour_parts(self, codes: torch.Tensor, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature, RGB skip) after colour_block of codes from F, with fixed noise."""
        return self.generator.run_blocks(codes, self.hairstyle_block + 1, self.colour_block, feature)

    @staticmethod
    def blend_colour(
        colour: tuple[torch.Tensor, torch.Tensor], source: tuple[torch.Tensor, torch.Tensor], hair_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`colour_parts` of the colour codes inside the hair mask, the source's outside."""
        return blend(colour[0], source[0], hair_mask), blend(colour[1], source[1], hair_mask)

    def colour_resume(
        self, codes: torch.Tensor, colour_feature: torch.Tensor, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The image from the colour feature (HairCLIPv2's final colour step resumes without the RGB
        skip; `colour_with_skip` gives one)."""
        return self.generator.resume(codes, self.colour_block + 1, colour_feature, skip)

    # ---------------------------------------------------------------------------- update_on_FS
    def update_on_fs(
        self,
        codes: torch.Tensor,
        src_intermediate: torch.Tensor,
        blended_feature: torch.Tensor,
        src_codes: torch.Tensor,
    ) -> torch.Tensor:
        """Carry a blended edit over to new codes: F(codes) + (F_blend - F_src), resumed with S_src."""
        intermediate = self.generator.features(codes, self.hairstyle_block)[0]
        return self.resume(src_codes, intermediate + (blended_feature - src_intermediate))


# ----------------------------------------------------------------------- HairCLIPv2's functions
def hairstyle_feature_blending(
    generator,
    seg,
    src_latent,
    src_feature,
    visual_mask,
    latent_bald,
    latent_global=None,
    latent_local=None,
    local_blending_mask=None,
):
    """HairCLIPv2's `hairstyle_feature_blending` call (block 3 at 1024 px): returns (F, image).

    `local_blending_mask` is HairCLIPv2's (H, W, C) numpy painting (channel 0 == 1 marks the region)
    or a (N, 1, H, W) tensor.
    """
    blender = FeatureBlender(generator, HairSegmenter(seg), hairstyle_block=3, colour_block=6, dilate_kernel=30)
    if local_blending_mask is not None and not torch.is_tensor(local_blending_mask):
        local_blending_mask = torch.as_tensor(local_blending_mask[:, :, 0])[None, None].to(src_feature.device)
    out = blender.hairstyle(
        src_latent, src_feature, visual_mask, latent_bald, latent_global, latent_local, local_blending_mask
    )
    return out.feature, out.image


def color_feature_blending(generator, seg, edited_hairstyle_img, src_latent, color_latent_in, latent_F):
    """HairCLIPv2's `color_feature_blending` (blocks 4..6 at 1024 px): (colour feature, final hair mask)."""
    blender = FeatureBlender(generator, HairSegmenter(seg), hairstyle_block=3, colour_block=6, dilate_kernel=30)
    return blender.colour(edited_hairstyle_img, src_latent, color_latent_in, latent_F)
