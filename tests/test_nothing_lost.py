"""Nothing lost, second pass (#28): a checkpoint that fails to restore is never overwritten, a resumed
run keeps its metrics history, the photo command never replaces an input or an existing output and
leaves no temporary file, phone photos are read upright."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hairclipv2.edit import main as edit_main
from hairclipv2.io import open_rgb, save_image_atomic
from hairclipv2.training.checkpointing import (
    AppendingCSVLogger,
    SafeExceptionCheckpoint,
    check_checkpoint_file,
)
from hairclipv2.weights import CheckpointError


# ---------------------------------------------------------------------------- checkpoints
def test_a_truncated_or_foreign_checkpoint_is_found_without_unpickling(tmp_path):
    good = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.randn(64, 64)}, "global_step": 3}, good)
    assert check_checkpoint_file(good) == good
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.ckpt: not a readable checkpoint .*left as it is"):
        check_checkpoint_file(cut)
    flipped = bytearray(good.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # inside the tensor's bytes: the zip's checksum catches it
    (tmp_path / "flip.ckpt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="flip.ckpt: damaged checkpoint"):
        check_checkpoint_file(tmp_path / "flip.ckpt")


class _Trainer:
    def __init__(self):
        self.saved: list[str] = []

    def save_checkpoint(self, path: str, weights_only: bool | None = None) -> None:
        assert weights_only is False  # what a resume reads: the optimiser state too
        self.saved.append(path)


def test_the_exception_checkpoint_is_written_only_once_training_began(tmp_path):
    callback, trainer = SafeExceptionCheckpoint(tmp_path, "last"), _Trainer()
    callback.on_exception(trainer, None, RuntimeError("restore failed"))
    assert trainer.saved == []  # the restore failed: the checkpoint on disk is the run's, untouched
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    callback.teardown(trainer, None, "fit")
    assert (tmp_path / "last.ckpt").read_bytes() == b"kept"  # never deleted at teardown
    callback.on_train_start(trainer, None)
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert trainer.saved == [str(tmp_path / "last.ckpt")]


def test_train_py_refuses_a_damaged_resume_checkpoint_in_one_line_and_keeps_it(tmp_path):
    from test_training import compose_cfg

    from hairclipv2.config import ConfigError

    import train as train_script

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "csv").mkdir()
    last = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "global_step": 7}, last)
    last.write_bytes(last.read_bytes()[:-40])  # truncated, as `truncate -s` leaves it
    before = last.read_bytes()
    (run / "csv" / "metrics.csv").write_text("step,train/loss\n1,0.5\n")
    cfg = compose_cfg(run, [f"resume_dir={run}"])
    with pytest.raises(CheckpointError) as info:
        train_script.train(cfg)
    assert "\n" not in str(info.value) and "last.ckpt" in str(info.value)
    assert last.read_bytes() == before and (run / "csv" / "metrics.csv").read_text().startswith("step,train/loss\n1,")
    with pytest.raises(ConfigError, match="ckpt_path: no such file"):
        train_script.train(compose_cfg(run, [f"ckpt_path={tmp_path / 'nowhere.ckpt'}"]))


def test_a_resumed_run_appends_to_its_metrics_and_drops_the_steps_it_redoes(tmp_path):
    first = AppendingCSVLogger(str(tmp_path), name="csv", version="")
    for step in range(6):
        first.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    first.save()
    resumed = AppendingCSVLogger(str(tmp_path), name="csv", version="")
    resumed.experiment.drop_rows_from(4)  # the checkpoint was at step 4: steps 4 and 5 run again
    resumed.log_metrics({"train/loss": 0.1, "val/psnr": 20.0}, step=4)
    resumed.save()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["train/loss"] == "1.0" and rows[-1]["val/psnr"] == "20.0"


# ---------------------------------------------------------------------------- the photo command
@pytest.fixture
def selfie(tmp_path):
    from skimage import data

    path = tmp_path / "selfie.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=95)
    return path


@pytest.mark.parametrize("out", ["SELF", "SELF_edit", "DIR", "x.txt"])
def test_the_photo_command_checks_its_outputs_before_any_work(selfie, tmp_path, capsys, out):
    existing = tmp_path / "selfie_edit.png"
    existing.write_bytes(b"an earlier edit")
    before = selfie.read_bytes()
    # SELF_edit: OUT is new, but its sibling OUT_edit.png exists
    target = {"SELF": selfie, "SELF_edit": tmp_path / "selfie.png", "DIR": tmp_path, "x.txt": tmp_path / "x.txt"}[out]
    assert edit_main([str(selfie), "--text", "bob", "-o", str(target), "--set", "editing.nosuch=1"]) == 2
    err = capsys.readouterr().err
    expected = {
        "SELF": "would replace the input",
        "SELF_edit": "selfie_edit.png exists; pass --overwrite",
        "DIR": "is a folder",
        "x.txt": "cannot write images as '.txt'",
    }[out]
    assert expected in err and "Traceback" not in err  # refused before the (bad) editor settings are read
    assert selfie.read_bytes() == before and existing.read_bytes() == b"an earlier edit"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    image = Image.new("RGB", (8, 8))
    (tmp_path / "taken.png").mkdir()  # a folder where the file should go
    with pytest.raises(OSError):
        save_image_atomic(image, tmp_path / "taken.png")
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="cannot write images as '.txt'"):
        save_image_atomic(image, tmp_path / "x.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]


# ---------------------------------------------------------------------------- reading pictures
def test_phone_photos_are_read_upright(tmp_path):
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:10] = 255  # a white band at the top
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # the sensor's orientation
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    img = np.asarray(open_rgb(tmp_path / "phone.jpg"))
    assert img.shape == (60, 40, 3)
    assert img[:10].mean() > 200 and img[20:].mean() < 50


def test_a_picture_over_the_decompression_limit_is_a_message(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 10000 px is then over twice the limit
    with pytest.raises(ValueError, match="big.png: too many pixels to open safely"):
        open_rgb(tmp_path / "big.png")


def test_no_input_is_replaced_even_through_another_spelling(selfie, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert edit_main(["selfie.jpg", "--text", "bob", "-o", os.path.join(".", "sub", "..", "selfie.jpg")]) == 2
    assert "would replace the input" in capsys.readouterr().err


# ---------------------------------------------------------------------------- evaluation
@pytest.mark.slow
def test_unreadable_sources_fail_alone_and_a_missing_summary_is_rebuilt(tmp_path):
    from test_protocols import astronaut_variants, evaluate_in_process

    data = tmp_path / "data" / "sources"
    astronaut_variants(data, 3)
    good = next(data.glob("*.png"))
    (data / "empty.png").write_bytes(b"")
    (data / "text.png").write_text("not a picture")
    Image.open(good).convert("RGB").save(data / "cut.jpg")
    (data / "cut.jpg").write_bytes((data / "cut.jpg").read_bytes()[:500])
    args = ["task=reconstruction", f"pairs={tmp_path / 'data'}"]
    out = tmp_path / "run"
    summary = evaluate_in_process(out, args)  # FID's real set leaves out the three unreadable sources
    assert summary["edits"] == 3 and summary["failures"] == 3 and "fid" in summary["metrics"]
    for name in ("edits.csv", "summary.json", "report.html"):
        assert (out / name).is_file()

    for name in ("summary.json", "report.html"):
        (out / name).unlink()
    again = evaluate_in_process(out, args)  # every good pair is done: nothing is edited, all is rebuilt
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    assert again["metrics"]["fid"] == summary["metrics"]["fid"] and again["edits"] == 3


def test_fid_sets_leave_out_what_cannot_be_read(tmp_path):
    from hairclipv2.evaluation.fid import readable_images

    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"FID leaves out 1 unreadable image\(s\): .*empty.png"):
        kept = readable_images([tmp_path / "good.png", tmp_path / "empty.png"])
    assert [f.name for f, _ in kept] == ["good.png"] and kept[0][1].shape == (3, 299, 299)


def test_ids_made_from_file_names_are_made_safe(tmp_path):
    from hairclipv2.evaluation.pairs import read_pairs

    sources = tmp_path / "folder" / "sources"
    sources.mkdir(parents=True)
    for name in ("my photo (1).png", "tri(1).png"):
        Image.new("RGB", (40, 40)).save(sources / name)
    assert [p.id for p in read_pairs(tmp_path / "folder", "reconstruction")] == ["my_photo_1", "tri_1"]
    (tmp_path / "triples.txt").write_text("folder/sources/tri(1).png folder/sources/my photo (1).png x.png\n")
    Image.new("RGB", (40, 40)).save(tmp_path / "x.png")
    with pytest.raises(Exception, match="expected 3 image names"):  # a space inside a name splits the line
        read_pairs(tmp_path / "triples.txt", "hair_transfer")
    (tmp_path / "triples.txt").write_text("folder/sources/tri(1).png x.png x.png\n")
    (pair,) = read_pairs(tmp_path / "triples.txt", "hair_transfer")
    assert pair.id == "0001_tri_1_x_x"


def test_negative_loss_weights_are_refused_by_name():
    from hairclipv2.config import ConfigError, build
    from hairclipv2.training.objective import LossConfig

    with pytest.raises(ConfigError, match=r"model.loss.lpips_lambda: a loss weight must be >= 0 .*found -0.8"):
        build(LossConfig, {"lpips_lambda": -0.8}, "model.loss")
    assert build(LossConfig, {"lpips_lambda": 0.0}, "model.loss").lpips_lambda == 0.0


def test_the_app_answers_a_bad_setting_in_one_line_and_removes_its_folder(capsys):
    import glob
    import tempfile

    from hairclipv2 import app

    before = set(glob.glob(f"{tempfile.gettempdir()}/hairclipv2_app_*"))
    assert app.main(["--set", "editing.nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Could not override 'editing.nosuch'") and "Traceback" not in err
    assert set(glob.glob(f"{tempfile.gettempdir()}/hairclipv2_app_*")) == before  # nothing left behind


@pytest.mark.slow
def test_a_refused_pairs_file_leaves_no_run_folder(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "pairs.csv").write_bytes(b"source\na\x00b.png\n")
    run = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "task=reconstruction",
            f"pairs={tmp_path / 'pairs.csv'}",
            f"hydra.run.dir={run}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 1 and "holds a NUL character" in out.stderr.splitlines()[-1]
    assert not run.exists()
