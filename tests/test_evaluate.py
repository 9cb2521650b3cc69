"""evaluate.py: the metrics on hand-made pairs, pairs files, failures, the task end to end, the report."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.hair_metrics import PSNR_CAP, HairEditMetrics, keep_mask
from hairclipv2.evaluation.pairs import PairsError, read_pairs
from hairclipv2.losses import IDLoss, LPIPSLoss

from conftest import EVAL_FAST as FAST

ROOT = Path(__file__).resolve().parent.parent


def run_eval(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "evaluate.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HairEditMetrics(LPIPSLoss("alex", random_backbone=True), IDLoss("ir_se50", random_weights=True))


def test_metrics_of_identical_images(metrics):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    hair = torch.zeros(2, 1, 64, 64)
    hair[:, :, :16] = 1
    v = metrics.per_edit(x, x.clone(), hair, hair)
    assert torch.all(v["nonhair_psnr"] == PSNR_CAP)
    assert torch.allclose(v["nonhair_ssim"], torch.ones(2), atol=1e-5) and torch.all(v["nonhair_lpips"].abs() < 1e-6)
    assert torch.allclose(v["identity"], torch.ones(2), atol=1e-4)


def test_a_change_inside_the_hair_leaves_non_hair_metrics_unchanged(metrics):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    hair = torch.zeros(1, 1, 64, 64)
    hair[:, :, :20, 10:50] = 1
    y = torch.where(hair.bool(), -x, x)  # only hair pixels change
    v = metrics.per_edit(x, y, hair, hair)
    assert (
        v["nonhair_psnr"].item() == PSNR_CAP
        and v["nonhair_ssim"].item() == pytest.approx(1.0, abs=1e-5)
        and abs(v["nonhair_lpips"].item()) < 1e-6
    )
    z = y.clone()
    z[:, :, 60:, :] = 1  # and a change far from the hair
    w = metrics.per_edit(x, z, hair, hair)
    assert w["nonhair_psnr"].item() < 30 and w["nonhair_ssim"].item() < 0.99 and w["nonhair_lpips"].item() > 0


def test_metrics_without_hair_are_not_applicable(metrics):
    """No hair in source nor result: the non-hair metrics would repeat the whole-image ones, and two
    empty hair regions look alike to CLIP; they are NaN (n/a), the others stay."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = x + 0.1 * torch.randn_like(x)
    hair = torch.zeros(2, 1, 64, 64)
    hair[0, :, :16] = 1  # the first edit has hair, the second none
    v = metrics.per_edit(x, y, hair, hair)
    for name in ("nonhair_psnr", "nonhair_ssim", "nonhair_lpips"):
        assert not v[name][0].isnan() and v[name][1].isnan(), name
    assert not v["psnr"].isnan().any() and not v["lpips"].isnan().any()


def test_runtime_and_plots_say_what_they_measured(tmp_path):
    from callbacks.edit_report import EditReportWriter, metric_means

    warm = {"status": "ok", "warmup": True, "seconds_per_edit": 20.0, "psnr": 10.0}
    timed = [{"status": "ok", "warmup": False, "seconds_per_edit": s, "psnr": 12.0} for s in (2.0, 4.0)]
    assert metric_means([warm]) == {"seconds_first_edit": 20.0, "psnr": 10.0}
    assert metric_means([warm, *timed])["seconds_per_edit"] == 3.0 and "seconds_first_edit" not in metric_means(
        [warm, *timed]
    )
    writer = EditReportWriter(tmp_path, "hair_text", [])
    assert writer.plot([warm, timed[0]], ["psnr"], {}) is None  # two edits: a table, no histogram
    assert writer.plot([warm, *timed], ["psnr"], {}) == "summary_plot.png"
    assert (tmp_path / "summary_plot.png").is_file()
    assert writer.plot([warm], ["psnr"], {}) is None and not (tmp_path / "summary_plot.png").exists()


def test_keep_mask_is_the_complement_of_the_dilated_union():
    a = torch.zeros(1, 1, 512, 512)
    a[..., 100, 100] = 1
    b = torch.zeros(1, 1, 512, 512)
    b[..., 300, 300] = 1
    keep = keep_mask(a, b)
    assert keep[..., 100, 100] == 0 and keep[..., 300, 300] == 0 and keep[..., 200, 200] == 1
    assert (keep == 0).sum().item() == 2 * 30 * 30  # the 30 px dilation of HairCLIPv2 at 512 px


def write_faces(folder: Path, n: int = 2) -> list[str]:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(data.astronaut()).crop((130, 0, 330, 200)).resize((64, 64))
    names = []
    for i in range(n):
        name = f"face{i}.png"
        Image.fromarray(np.asarray(img)[:, :: (1 if i % 2 == 0 else -1)]).save(folder / name)
        names.append(name)
    return names


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.slow
def test_bad_pairs_files_name_the_problem_and_write_nothing(tmp_path):
    names = write_faces(tmp_path / "img")
    cases = {
        "missing": (
            write_csv(
                tmp_path / "missing.csv", ["source", "text"], [[f"img/{names[0]}", "bob"], ["img/nope.png", "afro"]]
            ),
            "hair_text",
            r"missing.csv, row 2: image not found: .*nope.png",
        ),
        "column": (
            write_csv(tmp_path / "column.csv", ["source", "txt"], [[f"img/{names[0]}", "bob"]]),
            "hair_text",
            r"unknown column\(s\) \['txt'\]",
        ),
        "empty": (tmp_path / "empty.csv", "hair_text", r"empty.csv: empty file"),
        "rgb": (
            write_csv(tmp_path / "rgb.csv", ["source", "rgb"], [[f"img/{names[0]}", "300,0,0"]]),
            "hair_color",
            r"row 1: rgb must be 'r,g,b' with values in 0..255",
        ),
        "text": (
            write_csv(tmp_path / "text.csv", ["source", "text"], [[f"img/{names[0]}", " "]]),
            "hair_text",
            r"row 1: empty text",
        ),
    }
    (tmp_path / "empty.csv").write_text("")
    for name, (path, task, message) in cases.items():
        with pytest.raises(PairsError, match=message):
            read_pairs(path, task)
    run = tmp_path / "run"
    result = run_eval(
        [f"task={cases['missing'][1]}", f"pairs={cases['missing'][0]}", f"hydra.run.dir={run}", *FAST], timeout=120
    )
    assert result.returncode == 1 and "row 2: image not found" in result.stderr
    assert not (run / "edits").exists() and not (run / "report.html").exists() and not (run / "edits.csv").exists()


def test_folder_convention(tmp_path):
    write_faces(tmp_path / "sources")
    write_faces(tmp_path / "references")
    pairs = read_pairs(tmp_path, "hair_transfer")
    assert [p.id for p in pairs] == ["face0", "face1"] and pairs[0].reference.name == "face0.png"
    (tmp_path / "references" / "face1.png").unlink()
    with pytest.raises(PairsError, match="no reference for source face1.png"):
        read_pairs(tmp_path, "hair_transfer")


def test_a_failing_pair_is_reported_and_the_others_kept():
    from hairclipv2.editing.editor import EditOutput, HairEditModule

    class Editor(torch.nn.Module):
        """Fails on an all-black source; otherwise returns its sources (a failure-injection double)."""

        def edit(self, batch, source_code=None):
            if (batch.sources == -1).flatten(1).all(1).any():
                raise RuntimeError("cannot edit a black picture")
            s, hair = batch.sources, torch.zeros_like(batch.sources[:, :1])
            return EditOutput(s, s, s, hair, hair, s, s, {"embedding": 1.0})

    sources = torch.zeros(3, 3, 8, 8)
    sources[1] = -1
    batch = {
        "source": sources,
        "kind": "reconstruction",
        "id": ["a", "b", "c"],
        "row": [1, 2, 3],
        "condition": ["", "", ""],
    }
    unreadable = {"id": "z", "row": 4, "condition": "", "error": "ValueError: z.png: not a readable image"}
    out = HairEditModule(Editor()).predict_step({**batch, "failures": [unreadable]}, 0)
    assert out["batch"]["id"] == ["a", "c"] and out["output"].result.shape[0] == 2
    assert out["failures"] == [  # a pair that could not be loaded is reported with the others
        unreadable,
        {"id": "b", "row": 2, "condition": "", "error": "RuntimeError: cannot edit a black picture"},
    ]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    names = write_faces(tmp / "img")
    pairs = write_csv(
        tmp / "pairs.csv",
        ["id", "source", "text"],
        [["first", f"img/{names[0]}", "short bob haircut"], ["second", f"img/{names[1]}", "long curly hair"]],
    )
    result = run_eval(["task=hair_text", f"pairs={pairs}", f"hydra.run.dir={tmp / 'run'}", "batch_size=2", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run", result


@pytest.mark.slow
def test_text_task_end_to_end(text_run):
    run, result = text_run
    assert "RANDOM WEIGHTS" in result.stderr
    assert sorted(p.name for p in (run / "edits").iterdir()) == ["first.png", "second.png"]
    assert Image.open(run / "grids" / "first.png").size[0] > 4 * Image.open(run / "edits" / "first.png").size[0]
    rows = list(csv.DictReader(open(run / "edits.csv")))
    assert [r["id"] for r in rows] == ["first", "second"] and all(r["status"] == "ok" for r in rows)
    for key in ("nonhair_psnr", "nonhair_ssim", "nonhair_lpips", "identity", "clip_score", "seconds_per_edit"):
        assert all(r[key] != "" for r in rows), key
    summary = json.loads((run / "summary.json").read_text())
    assert summary["edits"] == 2 and summary["failures"] == 0 and summary["task"] == "hair_text"
    means = summary["metrics"]
    psnr = [float(r["nonhair_psnr"]) for r in rows if r["nonhair_psnr"] != "nan"]  # nan: no hair found
    assert means.get("nonhair_psnr", "n/a") == (pytest.approx(np.mean(psnr), rel=1e-4) if psnr else "n/a")
    # two edits: no distribution to plot (the summary table has the means)
    assert not (run / "summary_plot.png").exists() and "RANDOM WEIGHTS" in (run / "report.html").read_text()
    # one batch of two: both edits are the process's warm-up, and the runtime says so
    assert "seconds_first_edit" in means and "seconds_per_edit" not in means
    assert not list(run.rglob(".*.tmp"))


@pytest.mark.slow
def test_embedded_default_hair_transfer(tmp_path):
    result = run_eval(["task=hair_transfer", f"hydra.run.dir={tmp_path}", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "inputs" / "astronaut.png").is_file() and (
        tmp_path / "inputs" / "generated_reference.png"
    ).is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["edits"] == 1 and "warning" in summary
    (row,) = csv.DictReader(open(tmp_path / "edits.csv"))
    assert ("hair_similarity" in summary["metrics"]) == (row["hair_similarity"] != "nan")  # n/a without hair
    assert "seconds_first_edit" in summary["metrics"] and "seconds_per_edit" not in summary["metrics"]
    assert "report: " in result.stdout


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it with apt-get)")
def test_report_opens_in_headless_chromium_and_shows_the_table(text_run, tmp_path):
    run, _ = text_run
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", (run / "report.html").as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert '<table id="summary">' in dom and "nonhair_psnr" in dom and "clip_score" in dom and "second" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1000,800", f"--screenshot={shot}", (run / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (800, 1000) and pixels.std() > 10  # a rendered page, not a blank one


def test_mask_and_sketch_columns_are_read_and_checked_before_any_edit(tmp_path):
    from hairclipv2.evaluation.data import PairsDataset, hair_strokes, painted_mask

    names = write_faces(tmp_path / "img")
    Image.fromarray(painted_mask(32)).save(tmp_path / "mask.png")
    Image.fromarray(hair_strokes(32)).save(tmp_path / "sketch.png")
    pairs_file = write_csv(
        tmp_path / "pairs.csv",
        ["source", "text", "mask", "sketch"],
        [[f"img/{names[0]}", "bob", "mask.png", "sketch.png"]],
    )
    (pair,) = read_pairs(pairs_file, "hair_text", size=64)
    item = PairsDataset([pair], "hair_text", 64)[0]
    assert (
        item["mask"].shape == (32, 32)
        and item["mask"].dtype == torch.int64
        and set(item["mask"].unique().tolist()) == {0, 1, 6, 10}
    )
    assert item["sketch"].dtype == torch.uint8 and item["sketch"].max() == 128
    bad = np.array(painted_mask(32))
    bad[0, 0] = 3
    Image.fromarray(bad).save(tmp_path / "bad_labels.png")
    Image.fromarray(painted_mask(20)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "rgb.png")
    cases = {
        ("hair_mask", "mask", "bad_labels.png"): r"row 1: mask bad_labels.png holds labels \[3\]",
        ("hair_mask", "mask", "small.png"): r"row 1: mask small.png is 20x20, expected 64x64 or 32x32",
        ("hair_sketch", "sketch", "empty.png"): "row 1: sketch empty.png has no stroke",
        ("hair_sketch", "sketch", "rgb.png"): "row 1: sketch rgb.png must be a single-channel",
        ("hair_sketch", "sketch", "missing.png"): "row 1: image not found",
    }
    for (task, column, file), message in cases.items():
        bad_pairs = write_csv(tmp_path / f"{task}.csv", ["source", column], [[f"img/{names[0]}", file]])
        with pytest.raises(PairsError, match=message):
            read_pairs(bad_pairs, task, size=64)
    with pytest.raises(PairsError, match="unknown column"):
        read_pairs(
            write_csv(tmp_path / "c.csv", ["source", "rgb", "mask"], [[f"img/{names[0]}", "1,2,3", "mask.png"]]),
            "hair_color",
            size=64,
        )


@pytest.mark.slow
@pytest.mark.parametrize("task", ["hair_sketch", "hair_mask"])
def test_sketch_and_mask_tasks_end_to_end(tmp_path, task):
    result = run_eval([f"task={task}", f"hydra.run.dir={tmp_path}", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    drawn = {"hair_sketch": "sketch.png", "hair_mask": "painted_mask.png"}[task]
    assert (tmp_path / "inputs" / drawn).is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["edits"] == 1 and summary["failures"] == 0
    grid = np.asarray(Image.open(tmp_path / "grids" / "astronaut.png").convert("RGB")).astype(float)
    tile = grid.shape[1] // 5
    assert grid[:, tile : 2 * tile].std() > 5  # the condition column shows the strokes / painted map
