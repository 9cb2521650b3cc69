"""Face parsing (golden set bisenet) and the mask helpers."""

from __future__ import annotations

import pytest
import torch

from hairclipv2 import masks
from hairclipv2.models.parsing import BiSeNet
from hairclipv2.weights import CheckpointError, load_state_dict_strict

from conftest import load_golden, synth_state

LOGIT_TOL = 1e-4


@pytest.fixture(scope="module")
def parsed():
    inputs, expected, meta = load_golden("bisenet")
    net = BiSeNet(16).eval()
    load_state_dict_strict(net, synth_state("bisenet"), "bisenet golden weights")
    x = inputs["image_uint8"].float() / 127.5 - 1
    with torch.no_grad():
        net_input = net.normalise(x)
        head = net.head_logits(net_input)
        big, small = net(x)
    return dict(net=net, x=x, inputs=inputs, expected=expected, net_input=net_input, head=head, big=big, small=small)


def test_parser_logits_and_labels(parsed):
    e, idx = parsed["expected"], parsed["inputs"]["sample_index"]
    assert (parsed["net_input"].flatten(2)[:, :, idx] - e["net_input_sampled"]).abs().max() <= LOGIT_TOL
    assert (parsed["head"] - e["conv_out_logits"]).abs().max() <= LOGIT_TOL
    assert (parsed["small"].flatten(2)[:, :, idx] - e["logits512_sampled"]).abs().max() <= LOGIT_TOL
    labels_512 = parsed["small"].argmax(1)
    wrong = labels_512 != e["labels_512"].long()
    assert not (wrong & ~e["ambiguous_512"].bool()).any() and wrong.sum() <= 5
    assert (parsed["big"].argmax(1) != e["labels_1024"].long()).sum() <= 20  # 2x nearest of the above
    assert parsed["big"].shape[-1] == 1024 and parsed["small"].shape[-1] == 512


def test_parse_returns_labels_at_input_size(parsed):
    labels = parsed["net"].parse(parsed["x"])
    assert labels.shape == (1, 1024, 1024) and labels.dtype == torch.int64
    assert (labels != parsed["expected"]["labels_1024"].long()).sum() <= 20


def test_hairclipv2_masks_from_the_golden_labels(parsed):
    e = parsed["expected"]
    l512, l1024 = e["labels_512"].long(), e["labels_1024"].long()
    bald = masks.dilate_erode(masks.hair_and_ear_mask(l512), 30)
    assert torch.equal(bald, e["bald_blending_mask_512"].float())
    assert torch.allclose(masks.resize_mask(bald, 32), e["bald_blending_mask_down32"], atol=1e-6)
    assert torch.allclose(masks.resize_mask(masks.hair_mask(l512), 32), e["global_hair_mask_down32"], atol=1e-6)
    enlarged = masks.dilate_erode(masks.hair_mask(l512), 30)
    assert torch.equal(enlarged, e["enlarged_hair_mask_512"].float())
    final = masks.resize_mask(masks.resize_mask(enlarged, 1024, mode="nearest"), 256)
    assert torch.allclose(final, e["final_hair_mask_down256"], atol=1e-6)
    assert torch.equal(masks.resize_mask(masks.hair_mask(l1024), 256, mode="nearest"), e["ref_hairmask_256"].float())
    assert e["bald_blending_mask_down32"].max() > 1.0  # bicubic overshoot, kept as HairCLIPv2 keeps it
    assert masks.resize_mask(bald, 32, clamp=True).max() <= 1.0


def test_masks_on_hand_made_labels():
    m16, m19 = masks.HAIRCLIPV2_16, masks.CELEBAMASK_19
    labels = torch.tensor([[[0, 10, 6], [1, 15, 10]]])
    assert masks.hair_mask(labels).tolist() == [[[[0, 1, 0], [0, 0, 1]]]]
    assert masks.hair_and_ear_mask(labels).tolist() == [[[[0, 1, 1], [0, 0, 1]]]]
    assert masks.non_hair_mask(labels).tolist() == [[[[1, 0, 1], [1, 1, 0]]]]
    assert masks.background_mask(labels).tolist() == [[[[1, 0, 0], [0, 0, 0]]]]
    labels19 = torch.tensor([[[17, 7, 8, 10]]])
    assert masks.hair_and_ear_mask(labels19, m19).tolist() == [[[[1, 1, 1, 0]]]]
    assert (m16.classes["hair"], m19.classes["hair"], m19.classes["l_ear"]) == (10, 17, 7)
    with pytest.raises(ValueError, match="integer tensor"):
        masks.hair_mask(torch.zeros(1, 4, 4))


def test_dilate_erode_window_is_opencvs():
    """A single pixel y is in the dilation window of rows y-14..y+15 (the 30x30 box covers rows
    -15..+14 around its anchor, as OpenCV anchors an even kernel); the 15x15 erosion then trims 7 on
    each side: rows y-7..y+8 remain. The mirrored anchor would give y-8..y+7."""
    m = torch.zeros(1, 1, 64, 64)
    m[0, 0, 32, 32] = 1
    out = masks.dilate_erode(m, 30)
    rows = out[0, 0].amax(1).nonzero().flatten()
    cols = out[0, 0].amax(0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item()) == (32 - 7, 32 + 8) and (cols.min().item(), cols.max().item()) == (
        25,
        40,
    )
    assert masks.dilate_kernel(512) == 30 and masks.dilate_kernel(1024) == 60 and masks.dilate_kernel(256) == 15


def test_19_class_model_has_the_auxiliary_heads_and_bad_input_is_rejected():
    keys19 = set(BiSeNet(19).state_dict())
    keys16 = set(BiSeNet(16).state_dict())
    assert keys19 - keys16 == {k for k in keys19 if k.startswith(("conv_out16.", "conv_out32."))} and keys16 < keys19
    with pytest.raises(CheckpointError, match=r"unexpected keys \(\d+\): conv_out16"):
        load_state_dict_strict(BiSeNet(16), BiSeNet(19).state_dict(), "79999_iter.pth")
    with pytest.raises(ValueError, match=r"even H and W, got \(1, 3, 33, 32\)"):
        BiSeNet(16)(torch.zeros(1, 3, 33, 32))


def test_load_parser_drops_only_unused_heads(tmp_path):
    torch.manual_seed(0)
    state = BiSeNet(19).state_dict()  # a 16-class file with extra heads, as seg.pth may have
    state = {k: (v[:16] if k.startswith("conv_out.conv_out") else v) for k, v in state.items()}
    state["sp.conv1.conv.weight"] = torch.zeros(64, 3, 7, 7)
    torch.save(state, tmp_path / "seg.pth")
    from hairclipv2.models.parsing import load_parser

    net = load_parser(tmp_path / "seg.pth", 16)
    assert not net.training and torch.equal(net.cp.resnet.conv1.weight, state["cp.resnet.conv1.weight"])
    del state["ffm.conv1.weight"]
    torch.save(state, tmp_path / "seg.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): ffm.conv1.weight"):
        load_parser(tmp_path / "seg.pth", 16)
    with pytest.raises(Exception, match="seg.pth.*paths.weights.bisenet"):
        load_parser(tmp_path / "nothing.pth", 16)


def test_hair_segmenter_answers_hair_at_any_size_for_either_label_map():
    """Hair comes from the full-resolution labels resized by nearest (HairCLIPv2's background and
    colour losses), or the half-resolution ones; the label map decides which class is hair."""
    from hairclipv2 import masks as M
    from hairclipv2.models.parsing import HairSegmenter

    from conftest import ThresholdParser

    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    seg = HairSegmenter(ThresholdParser())
    full = seg.labels(images, full=True)
    assert full.shape == (2, 1, 1024, 1024) and seg.labels(images).shape == (2, 1, 16, 16)
    hair = seg.hair(images)
    assert hair.shape == (2, 1, 32, 32)
    assert torch.equal(hair, M.resize_mask((full == 10).float(), 32, mode="nearest"))
    assert 0 < hair.mean() < 1
    assert torch.equal(
        seg.hair(images, size=8, full=False), M.resize_mask((seg.labels(images) == 10).float(), 8, "nearest")
    )
    assert torch.equal(seg.hair_and_ears(torch.tensor([[[6, 10, 1]]])), torch.tensor([[[[1.0, 1.0, 0.0]]]]))

    class NoisyParser(torch.nn.Module):  # logits that differ at every one of the 1024x1024 pixels
        noise = torch.randn(1, 16, 1024, 1024, generator=torch.Generator().manual_seed(1))

        def forward(self, x):
            return self.noise, self.noise[..., ::2, ::2]

    noisy = HairSegmenter(NoisyParser())
    labels = noisy.labels(images[:1], full=True)
    for size in (96, 48):  # picking the pixels before the argmax gives the labels' own resize
        reference = M.resize_mask((labels == 10).float(), size, mode="nearest")
        assert torch.equal(noisy.hair(images[:1], size=size), reference), size

    celeba = HairSegmenter(ThresholdParser(), M.CELEBAMASK_19)
    labels = torch.tensor([[[17, 10, 7]]])
    assert torch.equal(celeba.hair_of_labels(labels), torch.tensor([[[[1.0, 0.0, 0.0]]]]))
    assert torch.equal(celeba.hair_and_ears(labels), torch.tensor([[[[1.0, 0.0, 1.0]]]]))
    weights = seg.class_weights(("background", "hair", "no such class"), torch.device("cpu"))
    assert weights.tolist() == [1.0 if i in (0, 10) else 0.0 for i in range(16)]
