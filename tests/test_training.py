"""e4e training: the loss terms and gradients of a step, the optimiser, the schedule, the datamodules,
and the train.py command (resume, multirun, DDP with 2 processes, wandb offline, missing inputs)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from PIL import Image

from hairclipv2.losses import delta_regularisation
from hairclipv2.training.objective import discriminated_rows
from hairclipv2.training.progressive import progressive_steps, stage_at
from hairclipv2.training.ranger import Ranger

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import train as train_script  # noqa: E402

# A few seconds per run: 32 px encoder input, 8 training images, batch 2.
FAST = [
    "experiment=e4e_demo",
    "model.encoder.input_size=32",
    "data.n_train=8",
    "data.n_val=4",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "model.progressive.start=1",
    "model.progressive.step_every=1",
    "callbacks.progress_bar.refresh_rate=0",
    "checkpoint_every=1",
]


def compose_cfg(out: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*FAST, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def run_train(args: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def build_module(**overrides):
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train", overrides=[*FAST, "model.loss.id_lambda=0.1", *[f"{k}={v}" for k, v in overrides.items()]]
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return instantiate(cfg.model)


# ---------------------------------------------------------------------------------- the step
def test_encoder_loss_terms_and_gradients():
    torch.manual_seed(0)
    module = build_module()  # progressive start 1, one more delta row every step
    module.apply_stage(3)  # stage 3: deltas of rows 1..3 on and regularised, rows 0..3 discriminated
    assert module.stage == 3 and discriminated_rows(module.stage, 10) == [0, 1, 2, 3]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    codes, y_hat = module.reconstruct(x, randomize_noise=False)
    d = module.adversary.discriminator
    d.requires_grad_(False)
    terms = module.encoder_losses(x, codes, y_hat)
    lc, dc = module.loss_cfg, module.disc_cfg
    deltas = {f"delta{i}_loss" for i in (1, 2, 3)}
    assert set(terms) == {
        "loss_l2",
        "loss_lpips",
        "loss_id",
        "id_improve",
        "total_delta_loss",
        "encoder_discriminator_loss",
        "loss",
        *deltas,
    }
    assert terms["loss_l2"].item() == pytest.approx(F.mse_loss(y_hat, x).item())
    assert terms["total_delta_loss"].item() == pytest.approx(
        delta_regularisation(codes, 3).item()
    )  # official: rows 1..stage
    assert sum(terms[k] for k in deltas).item() == pytest.approx(terms["total_delta_loss"].item())
    adv = torch.stack([F.softplus(-d(codes[:, i])).mean() for i in range(4)]).mean()
    assert terms["encoder_discriminator_loss"].item() == pytest.approx(adv.item())
    expected = (
        lc.l2_lambda * terms["loss_l2"]
        + lc.lpips_lambda * terms["loss_lpips"]
        + lc.id_lambda * terms["loss_id"]
        + lc.delta_norm_lambda * terms["total_delta_loss"]
        + dc.w_discriminator_lambda * terms["encoder_discriminator_loss"]
    )
    assert terms["loss"].item() == pytest.approx(expected.item())
    assert terms["id_improve"].item() == pytest.approx(-terms["loss_id"].item())  # x == y: sim(y, x) = 1
    terms["loss"].backward()
    enc = module.model.encoder
    used = [
        *enc.input_layer.parameters(),
        *enc.body.parameters(),
        *enc.latlayer1.parameters(),
        *[p for i in range(4) for p in enc.styles[i].parameters()],
    ]
    unused = [*enc.latlayer2.parameters(), *[p for i in range(4, 10) for p in enc.styles[i].parameters()]]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in used)
    assert all(p.grad is None for p in unused)  # heads of rows past the stage and the fine pyramid level
    assert all(not p.requires_grad and p.grad is None for p in module.model.decoder.parameters())
    assert all(p.grad is None for p in d.parameters())
    assert all(p.grad is None for p in module.id_loss.parameters()) and all(
        p.grad is None for p in module.lpips.parameters()
    )
    # Rows past the stage carry no delta: their gradient reaches only through w0.
    assert torch.equal(codes[:, 4:], codes[:, :1].expand(-1, 6, -1))


def test_delta_regulariser_variant_leaves_out_current_row():
    module = build_module(**{"model.loss.delta_reg_current_row": False})
    module.apply_stage(2)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    codes, y_hat = module.reconstruct(x, False)
    terms = module.encoder_losses(x, codes, y_hat)
    assert terms["total_delta_loss"].item() == pytest.approx(delta_regularisation(codes, 1).item())
    assert "delta2_loss" not in terms and "delta1_loss" in terms


def test_a_trained_step_updates_encoder_and_discriminator_only(tmp_path):
    cfg = compose_cfg(tmp_path, ["model.discriminator.d_reg_every=1", "~callbacks.official_export"])
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module, dm = instantiate(cfg.model), instantiate(cfg.data)
        dm.use_generator(module.generator, module.latent_avg)  # synthetic data from the generator inverted
        before = {k: v.clone() for k, v in module.state_dict().items()}
        trainer = pl.Trainer(
            max_steps=2,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            limit_val_batches=0,
            default_root_dir=tmp_path,
        )
        trainer.fit(module, datamodule=dm)
    after = module.state_dict()
    changed = lambda prefix: any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))  # noqa: E731
    assert changed("model.encoder.") and changed("adversary.discriminator.")
    assert not changed("model.decoder.") and not changed("id_loss.") and not changed("lpips.")
    assert trainer.global_step == 2  # encoder steps; the discriminator's steps are not counted
    logged = trainer.callback_metrics  # e4e's log keys: per-delta losses, id_improve, the weighted R1
    assert {"train/delta1_loss", "train/total_delta_loss", "train/r1_penalty"} <= set(logged)
    r1 = module.disc_cfg.r1 / 2 * logged["train/r1_penalty"] * module.disc_cfg.d_reg_every
    assert logged["train/discriminator_r1_loss"].item() == pytest.approx(r1.item(), rel=1e-5)
    assert (
        "train/discriminator_r1_loss" in trainer.callback_metrics
        and trainer.callback_metrics["train/progressive_stage"] == 1.0
    )


def test_validation_decodes_with_fresh_noise_as_the_official_forward():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        ffhq = compose("train", overrides=["experiment=e4e_ffhq"])
    assert ffhq.model.randomize_noise is True  # psp.forward(randomize_noise=True) in train and validate
    assert ffhq.model.loss.id_lambda == 0.1 and ffhq.trainer.max_steps == 300000  # the maintainer's FFHQ recipe
    torch.manual_seed(0)
    module = build_module(**{"model.randomize_noise": True}).eval()
    for name, p in module.model.decoder.named_parameters():  # rosinality initialises noise strengths at 0
        if name.endswith("noise.weight"):
            p.data.fill_(0.5)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b, again = (module.validation_step({"image": x}, k)["reconstruction"] for k in (0, 1, 0))
    assert not torch.equal(a, b)  # fresh noise per batch
    assert torch.equal(a, again)  # from validation's own seeded stream: training's sequence is left as it was


# ------------------------------------------------------------------------ optimiser, schedule
def test_ranger_without_gc_and_lookahead_is_radam():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(5, 3)), None
    b = torch.nn.Parameter(a.detach().clone())
    opt_a = Ranger([a], lr=1e-2, use_gc=False, k=10**9)
    opt_b = torch.optim.RAdam([b], lr=1e-2, betas=(0.95, 0.999), eps=1e-5)
    for step in range(12):
        for p, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            ((p - 1) ** 2 * torch.arange(3.0)).sum().backward()
            opt.step()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_ranger_lookahead_and_gradient_centralisation():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = Ranger([p], lr=0.1, k=1, alpha=0.5)
    p.grad = torch.tensor([[1.0, 3.0], [0.0, 0.0]])  # centralised per row: [[-1, 1], [0, 0]]
    opt.step()
    # One un-rectified step moves by -lr * g_c; lookahead with k=1, alpha=0.5 keeps half of it.
    torch.testing.assert_close(p.detach(), torch.tensor([[0.05, -0.05], [0.0, 0.0]]))


def test_progressive_schedule():
    steps = progressive_steps(18, 20000, 2000)
    assert steps[:3] == [0, 20000, 22000] and len(steps) == 18 and steps[-1] == 20000 + 16 * 2000
    assert [stage_at(s, steps) for s in (0, 19999, 20000, 21999, 22000, 10**6)] == [0, 0, 1, 1, 2, 17]
    assert stage_at(5, None) == 18


# ------------------------------------------------------------------------------ datamodules
def write_images(folder: Path, n: int, mode: str = "RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 40, len(mode)), dtype=np.uint8).squeeze(), mode).save(
            folder / f"{i:03d}.png"
        )


def test_image_folder_datamodule(tmp_path):
    from datamodules.image_folder import ImageFolderDataModule

    write_images(tmp_path / "train", 3)
    write_images(tmp_path / "train" / "gray", 1, "L")
    write_images(tmp_path / "train" / "rgba", 1, "RGBA")
    (tmp_path / "train" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    write_images(tmp_path / "test", 2)
    with pytest.warns(UserWarning, match="skipped 1 unusable"):
        dm = ImageFolderDataModule(
            str(tmp_path / "train"), str(tmp_path / "test"), batch_size=2, num_workers=0, test_workers=0, image_size=64
        )
    report = dm.report()
    assert report["train"]["images"] == 5 and report["test"]["images"] == 2
    assert report["train"]["skipped"][0]["path"].endswith("broken.jpg")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["image"].min() >= -1 and batch["image"].max() <= 1
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*nowhere \(set data.test_dir"):
        ImageFolderDataModule(str(tmp_path / "train"), str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no readable image in .*empty"):
        ImageFolderDataModule(str(tmp_path / "empty"), str(tmp_path / "test"))


# ------------------------------------------------------------------------- train.py, in-process
@pytest.mark.slow
def test_resume_restores_step_stage_and_optimiser(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_script.train(compose_cfg(tmp_path / "a", ["trainer.max_steps=3", "trainer.val_check_interval=3"]))
        first = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
        assert first["global_step"] == 3 and first["progressive_stage"] == 2
        train_script.train(
            compose_cfg(
                tmp_path / "b",
                [
                    "trainer.max_steps=5",
                    "trainer.val_check_interval=1",
                    f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}",
                ],
            )
        )
    second = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 5 and second["progressive_stage"] == 4
    enc_state = lambda ckpt: next(iter(ckpt["optimizer_states"][0]["state"].values()))  # noqa: E731
    assert enc_state(first)["step"] == 3 and enc_state(second)["step"] == 5  # continued, not restarted
    rows = list(csv.DictReader(open(tmp_path / "b" / "csv" / "metrics.csv")))
    train_steps = sorted({int(r["step"]) for r in rows if r.get("train/loss")})
    assert train_steps and min(train_steps) >= 3  # the resumed run did not start again from step 0


@pytest.mark.slow
def test_demo_training_reduces_the_loss(tmp_path):
    """A short version of `make demo`: the reconstruction and latent errors fall."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = compose_cfg(
            tmp_path,
            [
                "trainer.max_steps=30",
                "trainer.val_check_interval=30",
                "model.discriminator.w_discriminator_lambda=0",
                "model.progressive.start=null",
                "trainer.log_every_n_steps=1",
                "export_official=true",
            ],
        )
        module_metrics = train_script.train(cfg)
    rows = [r for r in csv.DictReader(open(tmp_path / "csv" / "metrics.csv")) if r.get("train/loss_l2")]
    l2 = [float(r["train/loss_l2"]) for r in rows]
    assert len(l2) == 30 and np.mean(l2[-5:]) < 0.7 * np.mean(l2[:5]), l2  # batches of 2: compare 5-step means
    assert "val/latent_mse" in module_metrics and (tmp_path / "e4e_official.pt").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["val/n_images"] == 4
    assert json.loads((tmp_path / "status.json").read_text()) == {
        "finished": True,
        "status": "finished",
        "global_step": 30,
    }
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["val_step000030.png"]


# ---------------------------------------------------------------------- train.py, subprocess
@pytest.mark.slow
def test_e4e_ffhq_without_data_or_weights_stops_at_once(tmp_path):
    result = run_train(
        ["experiment=e4e_ffhq", f"paths.data_dir={tmp_path}/data", f"hydra.run.dir={tmp_path}/run"], timeout=120
    )
    assert result.returncode == 1
    assert (
        "image folder not found" in result.stderr
        and f"{tmp_path}/data/ffhq" in result.stderr
        and "data.train_dir" in result.stderr
    )
    write_images(tmp_path / "data" / "ffhq", 1)
    write_images(tmp_path / "data" / "celeba_hq" / "test", 1)
    result = run_train(
        [
            "experiment=e4e_ffhq",
            f"paths.data_dir={tmp_path}/data",
            f"paths.weights_dir={tmp_path}/w",
            f"hydra.run.dir={tmp_path}/run",
        ],
        timeout=120,
    )
    assert result.returncode == 1
    assert "stylegan2-ffhq-config-f.pt" in result.stderr and "paths.weights.stylegan2" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_multirun_sweep_of_two_jobs(tmp_path):
    result = run_train(
        [
            "-m",
            *FAST[:-1],
            "trainer.max_steps=2",
            "model.loss.lpips_lambda=0.4,0.8",
            f"hydra.sweep.dir={tmp_path}",
            "callbacks.progress_bar.refresh_rate=0",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job, value in (("0", 0.4), ("1", 0.8)):
        config = (tmp_path / job / ".hydra" / "config.yaml").read_text()
        assert f"lpips_lambda: {value}" in config
        assert (tmp_path / job / "checkpoints" / "last.ckpt").is_file()
        assert "val/loss" in json.loads((tmp_path / job / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_with_two_processes(tmp_path):
    result = run_train(
        [
            *FAST,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "data.n_val=6",
            "data.val_batch_size=3",
            f"hydra.run.dir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/n_images"] == 6  # each rank saw 3: the metrics were reduced over both
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["best_step000004.ckpt", "last.ckpt"] or ckpts == ["best_step000002.ckpt", "last.ckpt"], ckpts
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


@pytest.mark.slow
def test_wandb_offline_logs_metrics_and_images(tmp_path):
    result = run_train(
        [*FAST, "logger=wandb", "trainer.log_every_n_steps=1", f"hydra.run.dir={tmp_path}"],
        env={"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = list((tmp_path / "wandb").glob("offline-run-*"))
    images = list((run_dir / "files" / "media" / "images").rglob("*.png"))
    assert images, "no image logged"
    (record,) = list(run_dir.glob("run-*.wandb"))
    data = record.read_bytes()  # protobuf records: the metric names appear as plain bytes
    assert b"train/loss" in data and b"val/psnr" in data and b"val/reconstructions" in data
    assert "HandleAbandonedError" not in result.stderr


# ------------------------------------------------------------------------------ official export
E4E_TRAIN_OPTIONS = (
    "exp_dir dataset_type encoder_type batch_size test_batch_size workers test_workers learning_rate optim_name train_decoder "
    "start_from_latent_avg lpips_type lpips_lambda id_lambda l2_lambda stylegan_weights stylegan_size checkpoint_path max_steps "
    "image_interval board_interval val_interval save_interval w_discriminator_lambda w_discriminator_lr r1 d_reg_every use_w_pool "
    "w_pool_size delta_norm delta_norm_lambda progressive_steps progressive_start progressive_step_every save_training_data "
    "sub_exp_dir keep_optimizer resume_training_from_ckpt update_param_list"
).split()


@pytest.mark.slow
def test_export_holds_the_best_checkpoint_with_every_official_option(tmp_path):
    import argparse

    from hairclipv2.models.inversion import InversionModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_script.train(
            compose_cfg(tmp_path, ["trainer.max_steps=4", "trainer.val_check_interval=2", "export_official=true"])
        )
    # As e4e's utils/model_utils.setup_model reads it.
    ckpt = torch.load(tmp_path / "e4e_official.pt", map_location="cpu", weights_only=True)
    opts = ckpt["opts"]
    opts["checkpoint_path"], opts["device"] = str(tmp_path / "e4e_official.pt"), "cpu"
    opts = argparse.Namespace(**opts)
    assert all(hasattr(opts, k) for k in E4E_TRAIN_OPTIONS), [k for k in E4E_TRAIN_OPTIONS if not hasattr(opts, k)]
    assert opts.dataset_type == "ffhq_encode" and opts.stylegan_size == 64 and opts.encoder_type == "Encoder4Editing"
    assert opts.start_from_latent_avg is True and opts.progressive_steps[:3] == [0, 1, 2]
    assert opts.optim_name == "ranger" and opts.learning_rate == 1e-3 and opts.w_discriminator_lr == 2e-5
    encoder = {k[len("encoder.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    best_path = next((tmp_path / "checkpoints").glob("best_step*.ckpt"))
    best = torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, best[f"model.encoder.{k}"]) for k, v in encoder.items())
    if best_path.name != "best_step000004.ckpt":  # the best is not the last: the export took the best
        assert any(not torch.equal(v, last[f"model.encoder.{k}"]) for k, v in encoder.items())
    assert opts.exported_from == str(best_path)
    InversionModel.from_official(tmp_path / "e4e_official.pt")  # and it loads strictly


# ------------------------------------------------------------------------------- kill and resume
KILL_RUN = [
    a for a in FAST if not a.startswith(("trainer.max_steps", "trainer.val_check_interval", "checkpoint_every"))
]
KILL_RUN += [
    "checkpoint_every=2",
    "trainer.val_check_interval=4",
    "~callbacks.official_export",
    "logger=csv",
    "trainer.log_every_n_steps=1",
]


def as_from_a_terminal() -> None:
    """In the child before exec: SIGINT and SIGTERM unblocked and at their default dispositions, as a
    shell starts a command. A child inherits ignored signals and the signal mask across exec, and the
    pytest process that starts it may have either changed by earlier tests (servers, browsers)."""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def signal_training(args: list[str], ready, signum: int, timeout: float = 300) -> None:
    """Start `train.py args`, wait until `ready()` (or the process ends, or `timeout`), send `signum`,
    and wait for the process to end."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        preexec_fn=as_from_a_terminal,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signum)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


def last_step(run: Path) -> int:
    last = run / "checkpoints" / "last.ckpt"
    return torch.load(last, map_location="cpu", weights_only=False)["global_step"] if last.is_file() else -1


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_in_place_and_ends_bit_identical(tmp_path):
    import signal

    killed = tmp_path / "killed"
    # SIGKILL: no handler runs, only what was on disk survives.
    signal_training(
        [*KILL_RUN, "trainer.max_steps=1000", f"hydra.run.dir={killed}"], lambda: last_step(killed) >= 4, signal.SIGKILL
    )
    at = last_step(killed)
    assert at >= 4 and at % 2 == 0, at  # checkpoints land every 2 steps, whole
    end = at + 4
    resumed = run_train([*KILL_RUN, f"trainer.max_steps={end}", f"resume_dir={killed}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (tmp_path / "logs").exists() and last_step(killed) == end  # continued in the same folder
    assert not list((killed / "checkpoints").glob(".*.tmp"))  # a write the kill cut short was cleaned up
    logged = {int(r["step"]) for r in csv.DictReader(open(killed / "csv" / "metrics.csv")) if r.get("train/loss")}
    assert min(logged) < at <= max(logged)  # the history before the kill is kept, the resumed steps appended
    clean = tmp_path / "clean"
    straight = run_train([*KILL_RUN, f"trainer.max_steps={end}", f"hydra.run.dir={clean}"])
    assert straight.returncode == 0, straight.stderr[-3000:]
    a = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    b = torch.load(clean / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert a["global_step"] == b["global_step"] == end
    for key, value in b["state_dict"].items():
        assert torch.equal(a["state_dict"][key], value), key  # encoder and discriminator, bit for bit
    assert torch.equal(a["random_state"]["torch"], b["random_state"]["torch"])


# ------------------------------------------------------------------------ debug and hparams_search
@pytest.mark.parametrize("debug", ["fdr", pytest.param("overfit", marks=pytest.mark.slow)])
def test_debug_configs_run(tmp_path, debug):
    overrides = (
        [f"debug={debug}", "trainer.max_steps=4", "trainer.val_check_interval=2"]
        if debug == "overfit"
        else [f"debug={debug}"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = train_script.train(compose_cfg(tmp_path, overrides))
    assert "train/loss" in metrics


@pytest.mark.slow
def test_optuna_search_runs_two_trials_and_reports_the_best(tmp_path):
    result = run_train(
        [
            "-m",
            "hparams_search=e4e_optuna",
            *FAST,
            "debug=limit",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            f"hydra.sweep.dir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import yaml

    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) >= {"model.optimizer.lr", "model.loss.lpips_lambda"}
    assert isinstance(best["best_value"], float) and sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "0",
        "1",
    ]
    # keep_checkpoints=best_trial: the best trial alone keeps checkpoints; each trial keeps its metrics
    kept = json.loads((tmp_path / "best_trial.json").read_text())
    assert [(tmp_path / t / "checkpoints").is_dir() for t in "01"] == [
        kept["run_dir"] == str(tmp_path / t) for t in "01"
    ]
    assert kept["value"] == pytest.approx(best["best_value"])
    assert all((tmp_path / t / "metrics.json").is_file() for t in "01")


def test_synthetic_codes_are_drawn_apart_from_the_generator_initialisation():
    """train.py seeds torch with `seed` and then builds the generator; data drawn from the same stream
    would reuse the mapping network's weights as its z (codes 3.4x farther from latent_avg)."""
    from datamodules.synthetic import SyntheticInversionDataModule
    from hairclipv2.weights import estimate_latent_avg

    from conftest import small_decoder

    g = small_decoder().requires_grad_(False)  # built right after torch.manual_seed(0)
    latent_avg = estimate_latent_avg(g).reshape(-1)
    dm = SyntheticInversionDataModule(n_train=16, n_val=4, batch_size=4, image_size=g.size, seed=0)
    dm.use_generator(g, latent_avg)
    dm.setup()
    unrelated = dm.render(16, torch.Generator().manual_seed(12345)).codes
    spread = lambda codes: (codes - latent_avg).pow(2).mean().item()  # noqa: E731
    assert spread(dm.train_set.codes) < 1.2 * spread(unrelated)
    assert spread(dm.val_set.codes) < 1.2 * spread(unrelated)
