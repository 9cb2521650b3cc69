"""Golden set e4e_objective: the encoder loss, the discriminator's fake codes, its loss and R1, as
`training/coach.py` @ 99ea505 computes them (1e-5 relative), through the training module's objective."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hairclipv2.models.encoders import INFERENCE_STAGE
from hairclipv2.training.objective import (
    DiscriminatorConfig,
    E4EObjective,
    LatentAdversary,
    LossConfig,
    delta_rows,
    discriminated_rows,
)

from conftest import load_golden, synth_state

STAGES = (0, 1, 3, 7, 9, 18)
REL = 1e-5


def close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return (got - want).abs().max().item() <= REL * max(1.0, want.abs().max().item())


@pytest.fixture(scope="module")
def golden():
    inputs, expected, meta = load_golden("e4e_objective")
    o = meta["opts"]
    dcfg = DiscriminatorConfig(
        w_discriminator_lambda=o["w_discriminator_lambda"],
        r1=o["r1"],
        d_reg_every=o["d_reg_every"],
        use_w_pool=o["use_w_pool"],
    )
    adversary = LatentAdversary(512, dcfg)
    adversary.discriminator.load_state_dict(synth_state("e4e_objective"), strict=True)
    lcfg = LossConfig(
        l2_lambda=o["l2_lambda"],
        lpips_lambda=0,
        id_lambda=0,
        delta_norm=o["delta_norm"],
        delta_norm_lambda=o["delta_norm_lambda"],
    )
    return E4EObjective(lcfg, None, None, adversary), inputs, expected, meta


@pytest.mark.parametrize("stage", STAGES)
def test_encoder_objective_per_stage(golden, stage):
    objective, inputs, expected, meta = golden
    terms = objective(inputs["x"], inputs["y_hat"], inputs["latent"], stage)
    assert delta_rows(stage, 10) == meta["facts"][f"delta_rows_stage{stage}"]
    assert close(terms["loss_l2"], expected[f"l2_stage{stage}"])
    assert close(terms["encoder_discriminator_loss"], expected[f"disc_term_stage{stage}"])
    assert close(terms.get("total_delta_loss", torch.zeros(())), expected[f"delta_total_stage{stage}"])
    assert close(terms["loss"], expected[f"loss_stage{stage}"])


@pytest.mark.parametrize("stage", STAGES)
def test_discriminator_fake_codes_include_latent_avg(golden, stage):
    objective, inputs, expected, _ = golden
    adversary = objective.adversary
    fake = adversary.fake_codes(inputs["encoder_out"], inputs["latent_avg"], discriminated_rows(stage, 10))
    _, fake_w = adversary.sample(inputs["real_w"], fake)
    assert close(fake_w, expected[f"fake_w_stage{stage}"])


def test_without_progressive_training_everything_is_discriminated_and_nothing_regularised(golden):
    objective, inputs, expected, _ = golden
    terms = objective(inputs["x"], inputs["y_hat"], inputs["latent"], INFERENCE_STAGE)
    assert close(terms["loss"], expected["loss_not_progressive"])
    fake = objective.adversary.fake_codes(
        inputs["encoder_out"], inputs["latent_avg"], discriminated_rows(INFERENCE_STAGE, 10)
    )
    assert close(objective.adversary.sample(inputs["real_w"], fake)[1], expected["fake_w_not_progressive"])


def test_discriminator_loss_and_r1(golden):
    objective, inputs, expected, _ = golden
    adversary = objective.adversary
    fake = adversary.fake_codes(inputs["encoder_out"], inputs["latent_avg"], discriminated_rows(3, 10))
    real_w, fake_w = adversary.sample(inputs["real_w"], fake)
    assert close(adversary.discriminator_loss(real_w, fake_w)["discriminator_loss"], expected["d_loss"])
    r1 = adversary.r1_loss(real_w)
    assert close(r1["r1_penalty"], expected["r1_penalty"])
    assert close(r1["discriminator_r1_loss"], expected["r1_final_loss"])
    assert [s for s in range(40) if adversary.is_r1_step(s)] == [0, 16, 32]


def test_variants_differ_from_the_official_terms(golden):
    """The flags keep the pre-f0a8223 fake codes and the rows-1..stage-1 regulariser on offer."""
    objective, inputs, expected, _ = golden
    raw = LatentAdversary(512, DiscriminatorConfig(w_discriminator_lambda=0.1, fake_codes_with_latent_avg=False))
    torch.testing.assert_close(
        raw.fake_codes(inputs["encoder_out"], inputs["latent_avg"], [0, 1]), inputs["encoder_out"][:, :2]
    )
    assert delta_rows(3, 10, include_current=False) == [1, 2] and delta_rows(1, 10, include_current=False) == []
    variant = E4EObjective(
        LossConfig(lpips_lambda=0, id_lambda=0, delta_reg_current_row=False), None, None, objective.adversary
    )
    terms = variant(inputs["x"], inputs["y_hat"], inputs["latent"], 3)
    assert terms["total_delta_loss"].item() < expected["delta_total_stage3"].item() - 1


def test_objective_refuses_a_weight_without_its_network():
    with pytest.raises(ValueError, match="lpips_lambda"):
        E4EObjective(LossConfig(lpips_lambda=0.8, id_lambda=0), None, None)
    with pytest.raises(ValueError, match="id_lambda"):
        E4EObjective(LossConfig(lpips_lambda=0, id_lambda=0.1), None, None)


def test_the_true_codes_term_adds_to_the_official_loss_and_needs_codes(golden):
    """w_lambda (not in e4e): the official loss plus w_lambda * MSE(codes, true codes), zero at the
    true codes; without codes in the batch it stops naming the setting."""
    objective, inputs, expected, _ = golden
    codes = inputs["latent"]
    with_codes = E4EObjective(replace(objective.cfg, w_lambda=2.0), None, None, objective.adversary)
    official = objective(inputs["x"], inputs["y_hat"], codes, 3)["loss"]
    true = codes + 0.1 * torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
    terms = with_codes(inputs["x"], inputs["y_hat"], codes, 3, true_codes=true)
    assert close(terms["loss_w"], ((codes - true) ** 2).mean())
    assert close(terms["loss"], official + 2.0 * terms["loss_w"])
    assert with_codes(inputs["x"], inputs["y_hat"], codes, 3, true_codes=codes)["loss_w"] == 0
    with pytest.raises(ValueError, match="model.loss.w_lambda > 0 needs data with true codes"):
        with_codes(inputs["x"], inputs["y_hat"], codes, 3)
