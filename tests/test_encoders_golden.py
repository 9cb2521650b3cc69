"""Golden sets e4e_encoder and ir_se50 reproduced with strict loading of the official key layouts."""

from __future__ import annotations

import json

import pytest
import torch

from hairclipv2.losses import IDLoss
from hairclipv2.models.encoders import Backbone, Encoder4Editing
from hairclipv2.models.inversion import InversionModel

from conftest import GOLDEN, golden_tolerance, load_golden, small_decoder, synth_state

FEATURE_TOL = 1e-5  # the golden README's bound on unit-length features and losses


@pytest.fixture(scope="module")
def e4e_golden():
    inputs, expected, meta = load_golden("e4e_encoder")
    encoder = Encoder4Editing(50, "ir_se", stylegan_size=meta["stylegan_size"]).eval()
    encoder.load_state_dict(synth_state("e4e_encoder", prefix_strip="encoder."), strict=True)
    return encoder, inputs, expected, meta


@pytest.mark.parametrize("stage", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 18])
def test_e4e_codes_at_every_progressive_stage(e4e_golden, stage):
    encoder, inputs, expected, _ = e4e_golden
    encoder.set_progressive_stage(stage)
    with torch.no_grad():
        codes = encoder(inputs["images"])
    want = expected[f"codes_stage{stage}"]
    assert codes.shape == want.shape == (2, 10, 512)
    assert (codes - want).abs().max() <= golden_tolerance(want)
    # Row 0 is never changed; rows past the stage equal row 0.
    if stage < 9:
        assert torch.equal(codes[:, stage + 1 :], codes[:, :1].expand(-1, 9 - stage, -1))


@pytest.mark.parametrize("stage", [18, 2])
def test_e4e_codes_plus_latent_avg_through_the_inversion_model(e4e_golden, stage):
    encoder, inputs, expected, _ = e4e_golden
    model = InversionModel(encoder, small_decoder(), inputs["latent_avg"]).eval()
    encoder.set_progressive_stage(stage)
    with torch.no_grad():
        codes = model.encode(inputs["images"])
    want = expected[f"codes_plus_avg_stage{stage}"]
    assert (codes - want).abs().max() <= golden_tolerance(want)


def test_official_decoder_keys_match_our_generator():
    from hairclipv2.models.stylegan2 import Generator

    manifest = json.loads((GOLDEN / "e4e_encoder" / "manifest.json").read_text())
    want = {e["key"][len("decoder.") :]: tuple(e["shape"]) for e in manifest["container_only_keys"]}
    got = {k: tuple(v.shape) for k, v in Generator(64, 512, 8).state_dict().items()}
    assert got == want


@pytest.fixture(scope="module")
def ir_golden(tmp_path_factory):
    inputs, expected, _ = load_golden("ir_se50")
    path = tmp_path_factory.mktemp("w") / "model_ir_se50.pth"
    torch.save(synth_state("ir_se50"), path)
    return IDLoss("ir_se50", weights=path), inputs, expected


def test_ir_se50_features(ir_golden):
    id_loss, inputs, expected = ir_golden
    with torch.no_grad():
        r0, r1, c0, c1 = 35, 223, 32, 220
        pooled = torch.nn.functional.adaptive_avg_pool2d(inputs["y"][:, :, r0:r1, c0:c1], 112)
        assert (pooled - expected["pooled_y"]).abs().max() <= golden_tolerance(expected["pooled_y"])
        assert (id_loss.net.embed(pooled) - expected["unnormalised_y"]).abs().max() <= golden_tolerance(
            expected["unnormalised_y"]
        )
        for name in ("y", "y_hat", "x"):
            feats = id_loss.extract_feats(inputs[name])
            assert (feats - expected[f"feats_{name}"]).abs().max() <= FEATURE_TOL, name


def test_id_loss_and_its_logs(ir_golden):
    id_loss, inputs, expected = ir_golden
    with torch.no_grad():
        result = id_loss.compare(inputs["y_hat"], inputs["y"], inputs["x"])
        plain = id_loss(inputs["y_hat"], inputs["y"])
    for key in ("loss", "sim_improvement", "diff_target", "diff_input", "diff_views"):
        want = expected["id_loss" if key == "loss" else key]
        assert (getattr(result, key) - want).abs().max() <= FEATURE_TOL, key
    assert abs(plain.item() - expected["id_loss"].item()) <= FEATURE_TOL


def test_backbone_is_the_official_architecture():
    keys = [e["key"] for e in json.loads((GOLDEN / "ir_se50" / "manifest.json").read_text())["entries"]]
    assert sorted(Backbone(112, 50, "ir_se").state_dict()) == sorted(keys)
