"""The inversion model, the official e4e container (read and write), losses and bad input."""

from __future__ import annotations

import warnings

import pytest
import torch

from hairclipv2.losses import IDLoss, LPIPSLoss, delta_regularisation
from hairclipv2.models.encoders import Backbone, Encoder4Editing, GradualStyleEncoder
from hairclipv2.models.inversion import InversionModel, build_encoder
from hairclipv2.weights import CheckpointError, MissingCheckpointError, read_encoder_checkpoint

from conftest import GOLDEN, golden_tolerance, load_golden, small_decoder, synth_state


@pytest.fixture(scope="module")
def images():
    return load_golden("e4e_encoder")[0]["images"]


def official_container(decoder) -> dict:
    """An official-layout e4e checkpoint built from the golden manifest (encoder) and a decoder."""
    inputs, _, meta = load_golden("e4e_encoder")
    state = {k: v for k, v in synth_state("e4e_encoder").items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    opts = {
        "encoder_type": "Encoder4Editing",
        "stylegan_size": meta["stylegan_size"],
        "start_from_latent_avg": True,
        "device": "cuda:0",
        "lpips_lambda": 0.8,
    }
    return {"state_dict": state, "latent_avg": inputs["latent_avg"], "opts": opts}


def test_loads_an_official_container_and_reproduces_golden_codes(tmp_path, images):
    decoder = small_decoder()
    path = tmp_path / "e4e_ffhq_encode.pt"
    torch.save(official_container(decoder), path)
    model = InversionModel.from_official(path, decoder=small_decoder()).eval()
    assert isinstance(model.encoder, Encoder4Editing) and model.encoder.progressive_stage == 18
    want = load_golden("e4e_encoder")[1]["codes_plus_avg_stage18"]
    with torch.no_grad():
        recon, codes = model(images)
        assert (codes - want).abs().max() <= golden_tolerance(want)
        assert recon.shape == (2, 3, 256, 256)
        assert torch.equal(model.decoder.synthesis(codes), decoder.synthesis(codes))


def test_container_round_trip(tmp_path, images):
    torch.manual_seed(0)
    model = InversionModel(
        build_encoder("GradualStyleEncoder", 64), small_decoder(), torch.randn(512), start_from_latent_avg=False
    ).eval()
    path = model.save_official(tmp_path / "out" / "psp.pt", progressive_stage=3)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "latent_avg", "opts"}
    assert all(k.startswith(("encoder.", "decoder.")) for k in raw["state_dict"])
    assert raw["latent_avg"].shape == (10, 512)
    assert raw["opts"]["encoder_type"] == "GradualStyleEncoder" and raw["opts"]["stylegan_size"] == 64
    assert raw["opts"]["start_from_latent_avg"] is False and raw["opts"]["progressive_stage"] == 3
    loaded = InversionModel.from_official(path).eval()
    assert isinstance(loaded.encoder, GradualStyleEncoder) and not loaded.start_from_latent_avg
    with torch.no_grad():
        a, b = model(images[:1]), loaded(images[:1])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not list(path.parent.glob(".*.tmp"))


def test_small_encoders_tap_stage_ends_and_round_trip(tmp_path, images):
    from hairclipv2.models.encoders.irse import stage_ends

    assert stage_ends(50)[1:] == (6, 20, 23)  # the official taps
    small = build_encoder("Encoder4Editing", 64, num_layers=18, input_size=64, style_hidden=32)
    c1, c2, c3 = small.pyramid_inputs(torch.zeros(1, 3, 64, 64))
    assert (c1.shape[1:], c2.shape[1:], c3.shape[1:]) == ((128, 16, 16), (256, 8, 8), (512, 4, 4))
    assert small.styles[0].convs[0].out_channels == 32 and small.styles[0].linear.weight.shape == (512, 32)
    official_size = sum(p.numel() for p in build_encoder("Encoder4Editing", 64, input_size=64).parameters())
    assert sum(p.numel() for p in small.parameters()) < official_size / 4
    torch.manual_seed(0)
    model = InversionModel(small, small_decoder()).eval()
    path = model.save_official(tmp_path / "small.pt")
    opts = torch.load(path, weights_only=True)["opts"]
    assert (opts["encoder_layers"], opts["style_hidden"], opts["input_size"]) == (18, 32, 64)
    loaded = InversionModel.from_official(path).eval()
    x = torch.nn.functional.interpolate(images[:1], size=64, mode="bilinear")
    with torch.no_grad():
        assert torch.equal(model(x)[1], loaded(x)[1])


def test_official_opts_of_the_ffhq_shape_need_nothing_of_ours():
    from hairclipv2.models.stylegan2 import Generator

    model = InversionModel(build_encoder("Encoder4Editing", 1024), Generator(1024, 512, 8))
    opts = model.official_opts()
    assert not {"generator", "encoder_layers", "style_hidden", "input_size"} & set(opts)
    assert opts["stylegan_size"] == 1024 and opts["encoder_type"] == "Encoder4Editing"


def test_other_architectures_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not an e4e/pSp checkpoint"):
        read_encoder_checkpoint(GOLDEN / "stylegan2_tiny" / "checkpoint.pt")
    path = tmp_path / "model_ir_se50.pth"
    torch.save(official_container(small_decoder()), path)
    with pytest.raises(CheckpointError, match=r"does not match Backbone:\s+missing keys \(\d+\): input_layer"):
        IDLoss("ir_se50", weights=path)
    with pytest.raises(MissingCheckpointError, match="e4e_ffhq_encode.pt.*paths.weights.e4e"):
        InversionModel.from_official(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="encoder predicts 18 W\\+ rows but the generator takes 10"):
        InversionModel(build_encoder("Encoder4Editing", 1024), small_decoder())


@pytest.mark.parametrize("shape", [(1, 3, 128, 128), (1, 1, 256, 256), (3, 256, 256)])
def test_encoders_reject_bad_images(shape):
    with pytest.raises(
        ValueError,
        match=r"expects images of shape \(N, 3, 256, 256\).*got " + str(shape).replace("(", r"\(").replace(")", r"\)"),
    ):
        Encoder4Editing(50, "ir_se", 64)(torch.zeros(shape))


def test_backbone_rejects_bad_images_and_options():
    with pytest.raises(ValueError, match=r"\(N, 3, 112, 112\)"):
        Backbone(112).eval()(torch.zeros(1, 3, 100, 100))
    with pytest.raises(ValueError, match="num_layers must be one of"):
        Backbone(112, num_layers=26)
    with pytest.raises(ValueError, match="progressive stage must be in"):
        Encoder4Editing(50, "ir_se", 64).set_progressive_stage(19)


def test_zero_initialised_style_heads_start_at_the_offset_and_still_learn():
    torch.manual_seed(0)
    encoder = Encoder4Editing(50, "ir_se", 64, input_size=32, zero_init_styles=True)
    x = torch.randn(2, 3, 32, 32)
    codes = encoder(x)
    assert codes.shape == (2, 10, 512) and codes.abs().max() == 0  # codes = latent_avg exactly
    (codes - 1).pow(2).sum().backward()  # a zero layer still gets a gradient: its input is not zero
    assert encoder.styles[0].linear.weight.grad.abs().sum() > 0


def test_delta_regularisation_by_hand():
    codes = torch.zeros(2, 4, 3)
    codes[0, 1] = torch.tensor([3.0, 4.0, 0.0])  # |delta| = 5 for sample 0, row 1
    codes[1, 2] = torch.tensor([0.0, 0.0, 2.0])  # |delta| = 2 for sample 1, row 2
    assert delta_regularisation(codes, 1).item() == pytest.approx(2.5)  # mean over samples of row 1
    assert delta_regularisation(codes, 2).item() == pytest.approx(3.5)
    assert delta_regularisation(codes, 18).item() == pytest.approx(3.5)  # capped at the rows present
    assert delta_regularisation(codes, 0).item() == 0.0


def test_id_loss_stays_frozen_and_passes_gradients(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model_ir_se50.pth"
    torch.save(Backbone(112, 50, "ir_se", drop_ratio=0.6).state_dict(), path)
    id_loss = IDLoss("ir_se50", weights=path)
    id_loss.train()
    assert not id_loss.net.training and not any(p.requires_grad for p in id_loss.parameters())
    y = torch.rand(1, 3, 256, 256) * 2 - 1
    y_hat = (y + 0.3 * torch.randn_like(y)).clamp(-1, 1).requires_grad_(True)
    loss = id_loss(y_hat, y)
    loss.backward()
    assert 0 < loss.item() < 2 and y_hat.grad.abs().sum() > 0
    assert id_loss.similarity(y, y).sub(1).abs().max() < 1e-5
    big = torch.nn.functional.interpolate(y, size=512, mode="bilinear")
    assert id_loss.similarity(big, y).item() > id_loss.similarity(y_hat, y).item()  # other sizes are pooled to 256


def test_facenet_backbone_loads_its_release_file(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631).state_dict()
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(state, path)
    id_loss = IDLoss("facenet", weights=path)
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    sim = id_loss.similarity(x, x)
    assert torch.allclose(sim, torch.ones(2), atol=1e-5)
    with pytest.raises(MissingCheckpointError, match="20180402-114759-vggface2.pt.*paths.weights.facenet"):
        IDLoss("facenet", weights=tmp_path / "none.pt")


def test_lpips_offline_behaviour(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingCheckpointError, match="alexnet-owt-7be5be79.pth"):
        LPIPSLoss("alex")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lpips = LPIPSLoss("alex", random_backbone=True)
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.all(lpips.distance(x, x) == 0)
    d = lpips.distance(x, y)
    assert torch.all(d > 0) and torch.allclose(d, lpips.distance(y, x), atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        lpips(x, y[:, :, :32])


def test_lpips_package_equals_e4e_criteria_lpips_on_the_same_weights():
    """e4e trains with its own `criteria/lpips` (AlexNet relu1..relu5, z-score with shift
    (-.030, -.088, -.188) and scale (.458, .448, .450), unit-normalised features with eps 1e-10, 1x1
    linear heads, spatial mean, sum over layers, mean over the batch); the `lpips` package computes
    the same function. Written out here on one set of (random) backbone weights and the package's
    linear heads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = LPIPSLoss("alex", random_backbone=True)
    torch.manual_seed(0)
    x, y = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    net = loss.net
    features = [m for s in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5) for m in s]
    mean = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    std = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def e4e_features(img: torch.Tensor) -> list[torch.Tensor]:
        h, out = (img - mean) / std, []
        for i, layer in enumerate(features, 1):
            h = layer(h)
            if i in (2, 5, 8, 10, 12):  # e4e's AlexNet target_layers
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        fx, fy = e4e_features(x), e4e_features(y)
        heads = [lin.model[1] for lin in net.lins]
        e4e_value = (
            torch.cat([head((a - b) ** 2).mean((2, 3), True) for a, b, head in zip(fx, fy, heads)]).sum() / x.shape[0]
        )
        ours = loss(x, y)
    assert ours.item() == pytest.approx(e4e_value.item(), rel=1e-5)
