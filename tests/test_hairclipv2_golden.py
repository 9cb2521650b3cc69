"""Golden sets bald_proxy, sketch_encoder and style_loss: HairCLIPv2's official checkpoints load
strictly and give the official numbers, through the public API."""

from __future__ import annotations

import warnings

import pytest
import torch

from hairclipv2.editing.bald import BALD_ROWS, load_bald_proxy
from hairclipv2.editing.sketch import SketchProxy, load_sketch_encoder, sketch_input, sketch_mask
from hairclipv2.losses import StyleLoss
from hairclipv2.masks import dilate_erode
from hairclipv2.models.encoders import SketchEncoder
from hairclipv2.models.vgg import VGG16Activations

from conftest import GOLDEN, golden_tolerance, load_golden, synth_state


# --------------------------------------------------------------------------------- bald proxy
def test_official_bald_proxy_file_loads_strictly_and_gives_the_official_codes():
    inputs, expected, meta = load_golden("bald_proxy")
    proxy = load_bald_proxy(GOLDEN / "bald_proxy" / "bald_proxy.pt")
    assert proxy.alpha == pytest.approx(meta["alpha_used"])
    src = inputs["src_codes"]
    delta = proxy.mapper(src)
    assert (delta - expected["mapper_delta"]).abs().max() <= golden_tolerance(expected["mapper_delta"])
    assert (proxy(src) - expected["bald_codes"]).abs().max() <= golden_tolerance(expected["bald_codes"])


def test_bald_proxy_gives_every_sample_of_a_batch_its_own_rows():
    _, expected, _ = load_golden("bald_proxy")
    proxy = load_bald_proxy(GOLDEN / "bald_proxy" / "bald_proxy.pt")
    src = load_golden("bald_proxy")[0]["src_codes"]
    torch.manual_seed(0)
    batch = torch.cat([torch.randn(2, 18, 512), src, torch.randn(1, 18, 512)])
    out = proxy(batch)
    assert (out[2] - expected["bald_codes"][0]).abs().max() <= golden_tolerance(expected["bald_codes"])
    for i in range(4):
        assert (out[i : i + 1] - proxy(batch[i : i + 1])).abs().max() <= golden_tolerance(out)
    assert torch.equal(out[:, BALD_ROWS:], batch[:, BALD_ROWS:])  # rows 8.. are never moved


# ------------------------------------------------------------------------------ sketch proxy
@pytest.fixture(scope="module")
def sketch_golden():
    inputs, expected, _ = load_golden("sketch_encoder")
    encoder = SketchEncoder(input_nc=1).eval()
    encoder.load_state_dict(synth_state("sketch_encoder"), strict=True)
    return encoder, inputs, expected


def test_sketch_encoder_loads_official_keys_and_reproduces_the_codes(sketch_golden):
    encoder, inputs, expected = sketch_golden
    with torch.no_grad():
        codes = encoder(inputs["sketch_256"])
    assert codes.shape == (1, 18, 512)
    assert (codes - expected["codes"]).abs().max() <= golden_tolerance(expected["codes"])


def test_sketch_proxy_preprocessing_codes_and_mask_as_hairclipv2(sketch_golden, tmp_path):
    encoder, inputs, expected = sketch_golden
    strokes = inputs["sketch_uint8"]
    assert torch.equal(sketch_input(strokes), inputs["sketch_256"])  # PIL resize + ToTensor
    # The official container: keys under encoder_firststage., opts with input_nc.
    state = {f"encoder_firststage.{k}": v for k, v in encoder.state_dict().items()}
    torch.save({"state_dict": state, "opts": {"input_nc": 1}}, tmp_path / "sketch_proxy.pt")
    proxy = SketchProxy(load_sketch_encoder(str(tmp_path / "sketch_proxy.pt")), inputs["mean_latent"][0])
    out = proxy(torch.stack([strokes, torch.zeros_like(strokes)]))
    assert (out.codes[:1] - expected["latent_infer"]).abs().max() <= golden_tolerance(expected["latent_infer"])
    want_mask = dilate_erode((strokes > 0).float()[None, None], 30)
    assert torch.equal(out.mask[:1], want_mask) and out.mask[1].sum() == 0
    assert want_mask.sum() > (strokes > 0).sum()  # the dilation widens the strokes
    assert torch.equal(sketch_mask(strokes[None]), want_mask)


def test_sketch_proxy_file_errors_name_the_problem(tmp_path):
    torch.save({"state_dict": {"other.weight": torch.zeros(1)}, "opts": {}}, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="encoder_firststage"):
        load_sketch_encoder(str(tmp_path / "bad.pt"))
    with pytest.raises(FileNotFoundError, match="paths.weights.sketch_proxy"):
        load_sketch_encoder(str(tmp_path / "missing.pt"))


# -------------------------------------------------------------------------------- style loss
@pytest.fixture(scope="module")
def style_loss():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vgg = VGG16Activations(random_weights=True)
    vgg.load_state_dict(synth_state("style_loss"), strict=True)
    return StyleLoss(vgg)


def test_style_loss_equals_hairclipv2_relatively(style_loss):
    inputs, expected, _ = load_golden("style_loss")
    got = style_loss(
        inputs["ref_img_256"], inputs["gen_img_256"], inputs["ref_hairmask_256"], inputs["gen_hairmask_256"]
    )
    want = expected["style_loss"]
    assert got.shape == (1,)
    assert (got - want).abs().item() <= 1e-5 * want.abs().item()


def test_style_loss_is_per_sample_and_needs_matching_shapes(style_loss):
    inputs, _, _ = load_golden("style_loss")
    ref, gen, mr, mg = (
        inputs["ref_img_256"],
        inputs["gen_img_256"],
        inputs["ref_hairmask_256"],
        inputs["gen_hairmask_256"],
    )
    pair = style_loss(torch.cat([ref, ref]), torch.cat([gen, ref]), torch.cat([mr, mr]), torch.cat([mg, mr]))
    assert pair[0].item() == pytest.approx(style_loss(ref, gen, mr, mg).item(), rel=1e-5)
    assert pair[1].item() == 0  # the same masked image has the same Gram matrices
    with pytest.raises(ValueError, match="must match"):
        style_loss(ref, gen, mr[..., :128, :128], mg)
