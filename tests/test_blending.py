"""The blending module: exact limits, locality of the change, update_on_FS, HairCLIPv2's functions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hairclipv2 import masks as M
from hairclipv2.blending import FeatureBlender, blend, color_feature_blending, hairstyle_feature_blending
from hairclipv2.models.parsing import HairSegmenter
from hairclipv2.models.stylegan2 import Generator

from conftest import ThresholdParser


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    g = Generator(64, 512, 2, channels={4: 32, 8: 32, 16: 16, 32: 16, 64: 8}).eval().requires_grad_(False)
    blender = FeatureBlender(
        g, HairSegmenter(ThresholdParser()), hairstyle_block=1, colour_block=3, randomize_proxy_noise=False
    )
    avg = g.mean_latent(2000)[0]
    src, proxy = avg + 0.5 * torch.randn(2, 10, 512), avg + 0.5 * torch.randn(2, 10, 512)
    return g, blender, src, proxy


def test_zero_mask_returns_the_source_and_one_mask_the_proxy(setup):
    g, blender, src, proxy = setup
    f_src = g.features(src, 1)[0]
    f_proxy = blender.proxy_feature(proxy)
    zero = blender.hairstyle(
        src, f_src, blender.segmenter.labels(g.synthesis(src)), local_codes=proxy, local_mask=torch.zeros(2, 1, 8, 8)
    )
    assert torch.equal(zero.feature, f_src) and torch.equal(zero.image, g.resume(src, 2, f_src))
    one = blender.hairstyle(
        src, f_src, blender.segmenter.labels(g.synthesis(src)), local_codes=proxy, local_mask=torch.ones(2, 1, 8, 8)
    )
    assert torch.equal(one.feature, f_proxy) and torch.equal(one.image, g.resume(src, 2, f_proxy))


def influence_region(mask_f: torch.Tensor, blocks: int) -> torch.Tensor:
    """Pixels of the final image a feature change inside mask_f can reach after `blocks` resumed
    blocks. Per block, input pixel i reaches outputs 2i-2..2i+3 through the transposed 3x3 conv
    (2i..2i+2) and the 4-tap blur padded (1, 1); the 3x3 conv adds +-1: 2i-3..2i+4, i.e. nearest 2x
    upsampling dilated by 3. The RGB skip's upsampling (2i-1..2i+2) stays inside; ToRGB is 1x1 and
    demodulation does not depend on the input, so nothing else spreads."""
    region = mask_f
    for _ in range(blocks):
        region = F.max_pool2d(F.interpolate(region, scale_factor=2, mode="nearest"), 7, stride=1, padding=3)
    return region


def test_change_outside_the_mask_stays_within_the_receptive_field(setup):
    g, blender, src, proxy = setup
    f_src = g.features(src, 1)[0]
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 0, 7] = 1  # one corner pixel of F (no resize, so the mask's support is exact)
    out = blender.hairstyle(src, f_src, blender.segmenter.labels(g.synthesis(src)), local_codes=proxy, local_mask=mask)
    change = (out.image - g.resume(src, 2, f_src)).abs().amax(dim=1, keepdim=True)
    region = influence_region(mask, g.n_blocks - 1)
    assert region.mean() < 0.25  # the bound is informative
    assert change[region == 0].max() <= 1e-5  # demodulated convs are local: nothing leaks further
    assert change[region == 1].max() > 1e-2


def test_bald_and_global_masks_follow_hairclipv2(setup):
    g, blender, src, proxy = setup
    image = g.synthesis(src)
    labels = blender.segmenter.labels(image)
    f_src = g.features(src, 1)[0]
    out = blender.hairstyle(src, f_src, labels, bald_codes=src.flip(0), global_codes=proxy)
    bald = M.dilate_erode(M.hair_and_ear_mask(labels), M.dilate_kernel(labels.shape[-1]))
    expected = blend(blender.proxy_feature(src.flip(0)), f_src, bald)
    glob = M.hair_mask(blender.segmenter.labels(g.synthesis(proxy)))
    expected = blend(blender.proxy_feature(proxy), expected, glob)
    assert torch.equal(out.bald_mask, bald) and torch.equal(out.global_mask, glob)
    torch.testing.assert_close(out.feature, expected)
    with pytest.raises(ValueError, match="needs the bald proxy"):
        blender.hairstyle(src, f_src, labels, global_codes=proxy)


def test_update_on_fs_carries_the_edit_over(setup):
    g, blender, src, proxy = setup
    f_src = g.features(src, 1)[0]
    f_blend = f_src + 0.3 * torch.randn_like(f_src)
    same = blender.update_on_fs(src, f_src, f_blend, src)
    torch.testing.assert_close(same, g.resume(src, 2, f_blend), rtol=1e-5, atol=1e-5)
    moved = blender.update_on_fs(proxy, f_src, f_blend, src)
    torch.testing.assert_close(moved, g.resume(src, 2, g.features(proxy, 1)[0] + f_blend - f_src), rtol=1e-5, atol=1e-5)


def test_colour_blending(setup):
    g, blender, src, proxy = setup
    f_src = g.features(src, 1)[0]
    edited = g.resume(src, 2, f_src)
    feature, hair = blender.colour(edited, src, proxy, f_src)
    c_src = g.run_blocks(src, 2, 3, f_src)[0]
    c_col = g.run_blocks(proxy, 2, 3, f_src)[0]
    assert hair.shape == (2, 1, 64, 64) and set(hair.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(feature, blend(c_col, c_src, hair))
    assert blender.colour_resume(src, feature).shape == (2, 3, 64, 64)


@pytest.fixture(scope="module")
def big():
    """A 1024 px generator with tiny widths and no noise (fresh noise then changes nothing), for
    HairCLIPv2's own functions (blocks 3 and 6, 32x32 and 256x256)."""
    torch.manual_seed(0)
    g = (
        Generator(1024, 64, 1, channels={r: 4 for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)})
        .eval()
        .requires_grad_(False)
    )
    for m in g.modules():
        if type(m).__name__ == "NoiseInjection":
            m.weight.zero_()
    avg = g.mean_latent(1000)[0]
    return g, avg + 0.5 * torch.randn(1, 18, 64), avg + 0.5 * torch.randn(1, 18, 64), avg + 0.5 * torch.randn(1, 18, 64)


def test_hairclipv2_functions_as_the_official_code_computes_them(big):
    g, src, bald, glob = big
    seg = ThresholdParser()
    src_feature = g([src], input_is_latent=True, randomize_noise=False, end_layer=3)[0]
    visual_mask = seg(g([src], input_is_latent=True, randomize_noise=False)[0])[1].argmax(1, keepdim=True)
    feat, img = hairstyle_feature_blending(g, seg, src, src_feature, visual_mask, bald, glob)
    # The official steps, written out (scripts/feature_blending.py).
    bald_f = g([bald], input_is_latent=True, start_layer=0, end_layer=3)[0]
    glob_f = g([glob], input_is_latent=True, start_layer=0, end_layer=3)[0]
    glob_seg = seg(g([glob], input_is_latent=True, randomize_noise=False)[0])[1].argmax(1, keepdim=True)
    hair_ear = ((visual_mask == 6) | (visual_mask == 10)).float()
    bald_mask = F.interpolate(M.dilate_erode(hair_ear, 30), size=(32, 32), mode="bicubic")
    want = bald_f * bald_mask + src_feature * (1 - bald_mask)
    glob_mask = F.interpolate((glob_seg == 10).float(), size=(32, 32), mode="bicubic")
    want = glob_f * glob_mask + want * (1 - glob_mask)
    torch.testing.assert_close(feat, want)
    torch.testing.assert_close(
        img, g([src], input_is_latent=True, randomize_noise=False, start_layer=4, end_layer=8, layer_in=want)[0]
    )
    colour_feat, final_mask = color_feature_blending(g, seg, img, src, glob, feat)
    hair = (seg(img)[1].argmax(1, keepdim=True) == 10).float()
    final_want = F.interpolate(M.dilate_erode(hair, 30), size=(1024, 1024)).long()
    assert torch.equal(final_mask, final_want.float())
    src_c = g([src], input_is_latent=True, randomize_noise=False, start_layer=4, end_layer=6, layer_in=feat)[0]
    col_c = g([glob], input_is_latent=True, randomize_noise=False, start_layer=4, end_layer=6, layer_in=feat)[0]
    m = F.interpolate(final_want.float(), size=(256, 256), mode="bicubic")
    torch.testing.assert_close(colour_feat, col_c * m + src_c * (1 - m))
