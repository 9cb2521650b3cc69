"""The field's benchmark protocols in evaluate.py: FID and FID_CLIP, HairFastGAN's triples and their
scenarios, resumable runs, runs sharded over two processes, the report beside published numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hairclipv2.evaluation.fid import CLIPFeatures, RandomFeatures, frechet, set_distances
from hairclipv2.evaluation.pairs import PairsError, read_pairs
from hairclipv2.models.clip import CLIPModel
from hairclipv2.weights import MissingCheckpointError

from conftest import EVAL_FAST

ROOT = Path(__file__).resolve().parent.parent
FAST = [*EVAL_FAST, "batch_size=1", "logger=none"]
TIMING = ("seconds_per_edit", "seconds_first_edit")  # a process whose edits were all its warm-up


def astronaut_variants(folder: Path, n: int, size: int = 64, seed: int = 0) -> list[Path]:
    """n different pictures of skimage's astronaut (shifted, tinted, noisy)."""
    from skimage import data

    rng = np.random.default_rng(seed)
    base = np.asarray(Image.fromarray(data.astronaut()).resize((size + 8, size + 8), Image.LANCZOS), np.float64)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        dx, dy = rng.integers(0, 8, 2)
        img = base[dy : dy + size, dx : dx + size] * rng.uniform(0.7, 1.2, 3) + rng.normal(0, 8, (size, size, 3))
        paths.append(folder / f"{i}.png")
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


def test_fid_and_fid_clip_are_zero_for_a_set_against_itself_and_grow_with_noise(tmp_path):
    real = astronaut_variants(tmp_path / "real", 10)
    noisy = {}
    for sigma in (15, 60):
        noisy[sigma] = []
        for p in real:
            img = np.asarray(Image.open(p), np.float64) + np.random.default_rng(sigma).normal(0, sigma, (64, 64, 3))
            noisy[sigma].append(tmp_path / f"n{sigma}_{p.name}")
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(noisy[sigma][-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = {"fid": frechet(RandomFeatures()), "fid_clip": frechet(CLIPFeatures(CLIPModel(pretrained=None)))}
    same = set_distances(metrics, real, real)
    low, high = set_distances(metrics, real, noisy[15]), set_distances(metrics, real, noisy[60])
    for name in metrics:
        assert abs(same[name]) < 1e-3 * high[name], (name, same, high)
        assert same[name] < low[name] < high[name], name
    assert set_distances(metrics, real[:1], real) == {}  # one image has no covariance
    with pytest.raises(MissingCheckpointError, match="metrics.inception_weights.*torch-fidelity"):
        frechet(2048, tmp_path / "weights-inception-2015-12-05-6726825d.pth")


def write_triples(folder: Path) -> Path:
    """One triple per scenario, over five images."""
    astronaut_variants(folder, 5)
    lines = ["# face shape color", "0.png 1.png 2.png", "1.png 2.png 1.png", "", "2.png 2.png 3.png"]
    lines += ["3.png 4.png 4.png", "4.png 4.png 4.png"]
    path = folder / "triples.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_triples_give_each_line_its_scenario_and_bad_lines_fail_with_their_number(tmp_path):
    pairs = read_pairs(write_triples(tmp_path), "hair_transfer")
    assert [p.scenario for p in pairs] == [
        "shape_and_color",
        "shape_only",
        "color_only",
        "same_reference",
        "reconstruction",
    ]
    assert [p.row for p in pairs] == [2, 3, 5, 6, 7]  # line numbers
    assert pairs[0].reference.name == "1.png" and pairs[0].color_reference.name == "2.png"
    (tmp_path / "bad.txt").write_text("0.png 1.png 2.png\n0.png 1.png\n")
    with pytest.raises(PairsError, match=r"bad.txt, line 2: expected 3 image names"):
        read_pairs(tmp_path / "bad.txt", "hair_transfer")
    (tmp_path / "missing.txt").write_text("0.png 1.png 2.png\n\n0.png nobody.png 2.png\n")
    with pytest.raises(PairsError, match=r"missing.txt, line 3: image not found: .*nobody.png"):
        read_pairs(tmp_path / "missing.txt", "hair_transfer")
    with pytest.raises(PairsError, match="is for task=hair_transfer"):
        read_pairs(tmp_path / "triples.txt", "hair_text")


def evaluate_in_process(out: Path, overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir

    sys.path.insert(0, str(ROOT))
    import evaluate

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=[*FAST, f"paths.output_dir={out}", *overrides])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate.evaluate(cfg)


def comparable(summary: dict) -> dict:
    """A summary's values by "scenario/metric", without timings (which differ between runs)."""
    flat = {f"all/{k}": v for k, v in summary["metrics"].items() if k not in TIMING}
    for scenario, values in summary["scenarios"].items():
        flat.update({f"{scenario}/{k}": v for k, v in values.items() if k not in TIMING})
    return flat


def assert_same(a: dict, b: dict) -> None:
    """Equal up to float reductions that differ with the number of threads of a process."""
    assert comparable(a).keys() == comparable(b).keys()
    assert comparable(a) == pytest.approx(comparable(b), rel=1e-4, abs=1e-5)


@pytest.mark.slow  # 7 to 21 s on 2 cores
def test_a_resumed_run_equals_a_clean_one_and_the_report_shows_published_numbers(tmp_path):
    astronaut_variants(tmp_path / "data" / "sources", 4)
    args = ["task=reconstruction", f"pairs={tmp_path / 'data'}"]
    clean = evaluate_in_process(tmp_path / "clean", args)
    assert clean["edits"] == 4 and {"lpips", "l2", "ms_ssim", "psnr", "fid"} <= set(clean["metrics"])

    # A run that stopped after two edits: the records and images of the other two never got written.
    shutil.copytree(tmp_path / "clean", tmp_path / "resumed")
    for pid in sorted(p.stem for p in (tmp_path / "resumed" / "records").glob("*.json"))[2:]:
        (tmp_path / "resumed" / "records" / f"{pid}.json").unlink()
        (tmp_path / "resumed" / "edits" / f"{pid}.png").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "resumed" / "records").glob("*.json")}
    resumed = evaluate_in_process(tmp_path / "resumed", args)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "resumed" / "records").glob("*.json")}
    assert len(after) == 4 and all(after[name] == t for name, t in before.items())  # finished edits not redone
    assert resumed["edits"] == 4
    assert_same(resumed, clean)

    (row,) = resumed["published"]
    assert row["method"] == "e4e" and row["metrics"]["lpips"] == 0.199 and "SFE" in row["source"]
    report = (tmp_path / "resumed" / "report.html").read_text()
    assert '<table id="published">' in report and "CelebA-HQ" in report and "this run" in report


@pytest.mark.slow
def test_triples_report_each_scenario_and_two_processes_give_the_summary_of_one(tmp_path):
    """HairFastGAN's triples, one scenario per line; trainer=ddp_sim (two CPU processes on gloo) splits
    the pairs and its summary equals one process's."""
    triples = write_triples(tmp_path / "data")
    summaries = {}
    for name, trainer in (("one", ["trainer.devices=1"]), ("two", ["trainer=ddp_sim", "trainer.devices=2"])):
        out = tmp_path / name
        run = subprocess.run(
            [
                sys.executable,
                "evaluate.py",
                *FAST,
                "task=hair_transfer",
                f"pairs={triples}",
                *trainer,
                f"hydra.run.dir={out}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert ("GLOBAL_RANK: 1" in run.stdout + run.stderr) == (name == "two")  # two processes ran
        summaries[name] = json.loads((out / "summary.json").read_text())
    one = summaries["one"]
    assert one["edits"] == 5 and one["protocol"]["format"] == "HairFastGAN triples"
    assert set(one["scenarios"]) == {"shape_and_color", "shape_only", "color_only", "same_reference", "reconstruction"}
    assert {"fid", "fid_clip", "lpips", "psnr", "ssim", "ms_ssim", "clip_i", "identity"} <= set(one["metrics"])
    assert "shape and colour from the same image" in (tmp_path / "one" / "report.html").read_text()
    assert summaries["two"]["edits"] == 5
    assert_same(summaries["two"], one)


@pytest.mark.slow
def test_a_run_killed_after_two_edits_resumes_to_the_summary_of_a_clean_run(tmp_path):
    import os
    import signal
    import time

    astronaut_variants(tmp_path / "data" / "sources", 5)
    args = [sys.executable, "evaluate.py", *FAST, "task=reconstruction", f"pairs={tmp_path / 'data'}"]
    run = lambda out: subprocess.run([*args, f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, timeout=600)  # noqa: E731
    assert run(tmp_path / "clean").returncode == 0
    records = tmp_path / "killed" / "records"
    proc = subprocess.Popen([*args, f"hydra.run.dir={tmp_path / 'killed'}"], cwd=ROOT, start_new_session=True)
    deadline = time.time() + 300
    while len(list(records.glob("*.json"))) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(records.glob("*.json")))
    assert 2 <= done < 5 and not (tmp_path / "killed" / "summary.json").exists()
    resumed = run(tmp_path / "killed")
    assert resumed.returncode == 0 and b"already edited" in resumed.stderr
    clean = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert_same(json.loads((tmp_path / "killed" / "summary.json").read_text()), clean)


def test_fid_real_set_can_be_a_folder_of_real_faces(tmp_path):
    sys.path.insert(0, str(ROOT))
    import evaluate

    assert evaluate.real_image_files(None) is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairsError, match="metrics.fid_real_dir: .*empty must be a folder with at least two images"):
        evaluate.real_image_files(str(tmp_path / "empty"))
    faces = astronaut_variants(tmp_path / "real", 3)
    (tmp_path / "real" / "notes.txt").write_text("not an image")
    assert evaluate.real_image_files(str(tmp_path / "real")) == faces
