"""Nothing lost, nothing escapes: ids and output paths, CSV encodings and extra fields, spreadsheet
and link escaping, broken images failing alone, align's refusals, unique run folders, typed settings,
what checkpoints hold. The subprocess cases (exit codes, a real kill) are marked slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.edit_report import EditReportWriter, render_html, spreadsheet_safe
from hairclipv2.align import AlignError, planned_outputs
from hairclipv2.config import ConfigError, build, unique_run_dir
from hairclipv2.editing.embedding import EmbeddingConfig
from hairclipv2.evaluation.data import PairsDataset, collate_edits
from hairclipv2.evaluation.pairs import PairsError, read_pairs
from hairclipv2.io import open_rgb

ROOT = Path(__file__).resolve().parent.parent


def face(path: Path, size: int = 64, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def csv_file(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------------------------- ids, paths
@pytest.mark.parametrize(
    ("bad_id", "message"),
    [
        ("../../../../x", "cannot name an output file"),
        ("/tmp/x", "cannot name an output file"),
        ("a/b", "cannot name an output file"),
        ("x" * 300, "cannot name an output file"),
        (".hidden", "cannot name an output file"),
    ],
)
def test_ids_that_would_escape_the_run_folder_are_refused_before_any_edit(tmp_path, bad_id, message):
    face(tmp_path / "a.png")
    pairs = csv_file(tmp_path / "pairs.csv", f"id,source\nok,a.png\n{bad_id},a.png\n")
    with pytest.raises(PairsError, match=rf"row 2: id .*{message}"):
        read_pairs(pairs, "reconstruction")


def test_ids_are_unique_without_case_in_files_and_folders(tmp_path):
    face(tmp_path / "a.png")
    with pytest.raises(PairsError, match=r"row 2: duplicate id 'A' \(ids are compared without case\)"):
        read_pairs(csv_file(tmp_path / "pairs.csv", "id,source\na,a.png\nA,a.png\n"), "reconstruction")
    face(tmp_path / "folder" / "sources" / "a.png")
    face(tmp_path / "folder" / "sources" / "a.PNG")
    with pytest.raises(PairsError, match="a.(png|PNG): the file name gives the id 'a', as an earlier one does; rename"):
        read_pairs(tmp_path / "folder", "reconstruction")


def test_the_report_writer_never_writes_outside_its_folder(tmp_path):
    writer = EditReportWriter(tmp_path / "run", "reconstruction", pairs=[])
    assert writer.inside("edits", "a.png") == (tmp_path / "run" / "edits" / "a.png").resolve()
    for name in ("../../x.png", "/tmp/x.png", "a/b.png"):
        with pytest.raises(ValueError, match="would leave"):
            writer.inside("edits", name)


# ---------------------------------------------------------------------------------------- CSV
def test_excel_bom_utf16_extra_fields_and_other_encodings(tmp_path):
    face(tmp_path / "a.png")
    text = "source,id\na.png,x\n"
    for name, data in (("bom.csv", "\ufeff" + text), ("utf16.csv", text)):
        encoding = "utf-16" if name == "utf16.csv" else "utf-8"
        (pair,) = read_pairs(csv_file(tmp_path / name, data, encoding), "reconstruction")
        assert pair.id == "x" and pair.source.name == "a.png"
    with pytest.raises(PairsError, match=r"row 1: 1 value\(s\) more than the header's 2 columns \(\['extra'\]\)"):
        read_pairs(csv_file(tmp_path / "extra.csv", "source,id\na.png,x,extra\n"), "reconstruction")
    with pytest.raises(PairsError, match="not UTF-8 or UTF-16 text.*save it as UTF-8"):
        read_pairs(csv_file(tmp_path / "latin.csv", "source,id\na.png,caf\xe9\n", "latin-1"), "reconstruction")


def test_spreadsheet_formulas_are_neutralised_and_links_encoded(tmp_path):
    assert spreadsheet_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)" and spreadsheet_safe("@cmd") == "'@cmd"
    assert spreadsheet_safe("curly hair") == "curly hair" and spreadsheet_safe(-0.5) == -0.5
    writer = EditReportWriter(tmp_path, "hair_text", pairs=[])
    row = {"id": "a", "row": 1, "condition": "=1+2", "status": "ok", "error": "", "score": -1.0}
    writer.write([row], {"task": "hair_text", "edits": 1, "failures": 0, "metrics": {}})
    lines = (tmp_path / "edits.csv").read_text().splitlines()
    assert lines[1].startswith("a,1,'=1+2,ok,,-1.0")
    html = render_html([{**row, "id": "a#b?c%"}], ["id"], {"task": "t", "edits": 1, "failures": 0, "metrics": {}}, None)
    assert 'src="grids/a%23b%3Fc%25.png"' in html


# ------------------------------------------------------------------------------------- images
def test_broken_images_are_refused_by_name_and_deep_ones_scaled(tmp_path):
    good = face(tmp_path / "good.jpg", 128)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    (tmp_path / "text.jpg").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    face(tmp_path / "tiny.png", 1)
    for name, message in (
        ("truncated.jpg", "truncated"),
        ("text.jpg", "not a readable image"),
        ("empty.png", "not a readable image"),
        ("tiny.png", "1x1 px is too small"),
    ):
        with pytest.raises(ValueError, match=rf"(?i){name}.*{message}"):
            open_rgb(tmp_path / name)
    deep = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    pixels = np.asarray(open_rgb(tmp_path / "deep.png"))[..., 0].astype(float)
    assert abs(pixels.mean() - 127.5) < 2 and (pixels > 250).mean() < 0.05  # scaled, not clipped to white


def test_a_pair_whose_image_is_broken_fails_alone(tmp_path):
    face(tmp_path / "a.png")
    face(tmp_path / "c.png")
    (tmp_path / "b.png").write_text("not a picture")
    pairs = read_pairs(csv_file(tmp_path / "pairs.csv", "id,source\na,a.png\nb,b.png\nc,c.png\n"), "reconstruction")
    dataset = PairsDataset(pairs, "reconstruction", 64)
    batch = collate_edits([dataset[i] for i in range(3)])
    assert batch["id"] == ["a", "c"] and batch["source"].shape == (2, 3, 64, 64)
    (failure,) = batch["failures"]
    assert failure["id"] == "b" and failure["row"] == 2 and "b.png: not a readable image" in failure["error"]
    only_bad = collate_edits([dataset[1]])
    assert "source" not in only_bad and only_bad["failures"][0]["id"] == "b"


# -------------------------------------------------------------------------------------- align
def test_align_refuses_what_would_lose_pictures(tmp_path):
    photos = tmp_path / "photos"
    face(photos / "src.jpg")
    with pytest.raises(AlignError, match="input folder or inside it"):
        planned_outputs(photos, photos, overwrite=True)
    with pytest.raises(AlignError, match="input folder or inside it"):
        planned_outputs(photos, photos / "aligned", overwrite=True)
    face(photos / "src.png")
    with pytest.raises(AlignError, match="src.jpg and src.png"):
        planned_outputs(photos, tmp_path / "out", overwrite=True)
    (photos / "src.png").unlink()
    face(tmp_path / "out" / "src.png")
    with pytest.raises(AlignError, match="already holds src.png; pass --overwrite"):
        planned_outputs(photos, tmp_path / "out", overwrite=False)
    assert planned_outputs(photos, tmp_path / "out", overwrite=True) == {
        photos / "src.jpg": tmp_path / "out" / "src.png"
    }


# ------------------------------------------------------------------------- folders and settings
def test_run_folders_never_collide(tmp_path):
    first = unique_run_dir(str(tmp_path / "runs" / "2026-11-25_12-00-00"))
    second = unique_run_dir(str(tmp_path / "runs" / "2026-11-25_12-00-00"))
    assert first != second and Path(first).is_dir() and Path(second).is_dir() and second.endswith("_1")


def test_settings_are_typed_and_checked_by_name():
    assert build(EmbeddingConfig, {"w_steps": 5, "lr": 1}, "editing.embedding").lr == 1.0
    with pytest.raises(ConfigError, match=r"editing.embedding.w_steps: expected int, found 'abc'"):
        build(EmbeddingConfig, {"w_steps": "abc"}, "editing.embedding")
    with pytest.raises(ConfigError, match=r"editing.embedding.fs_steps: expected an integer >= 1, found 0"):
        build(EmbeddingConfig, {"fs_steps": 0}, "editing.embedding")
    with pytest.raises(ConfigError, match=r"editing.embedding: unknown keys \['steps'\]"):
        build(EmbeddingConfig, {"steps": 3}, "editing.embedding")


def test_an_unused_identity_network_is_neither_built_nor_checkpointed():
    from test_training import build_module

    module = build_module(**{"model.loss.id_lambda": 0})
    assert module.id_loss is None and not any(k.startswith("id_loss.") for k in module.state_dict())


@pytest.mark.slow  # 7 to 21 s on 2 cores
def test_an_e4e_file_does_not_replace_the_editors_generator(tmp_path):
    from hairclipv2.models.inversion import InversionModel, build_encoder
    from hairclipv2.models.stylegan2 import Generator
    from hairclipv2.pipeline import build_hair_editor

    from conftest import ThresholdParser

    def generator(seed: int) -> Generator:
        torch.manual_seed(seed)
        return Generator(64, 512, 2, channels={4: 32, 8: 32, 16: 16, 32: 16, 64: 8}).eval()

    other = generator(1)
    InversionModel(build_encoder("Encoder4Editing", 64, input_size=64), other).save_official(tmp_path / "e4e.pt")
    g = generator(0)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        editor = build_hair_editor(
            g,
            random_weights=True,
            parser=ThresholdParser(),
            use_landmarks=False,
            e4e_weights=str(tmp_path / "e4e.pt"),
            hairstyle_block=1,
            colour_block=3,
        )
    assert all(torch.equal(before[k], v) for k, v in editor.generator.state_dict().items())
    assert editor.encoder is not None and editor.encoder.decoder is editor.generator


# ------------------------------------------------------------------------------ entry points
def run(script: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env
    )


@pytest.mark.slow
def test_wrong_settings_exit_2_naming_the_key_without_a_traceback(tmp_path):
    cases = [
        (
            "train.py",
            ["experiment=e4e_demo", "trainer.max_steps=abc"],
            "trainer.max_steps: expected an integer >= 1 (or -1), found 'abc'",
        ),
        (
            "train.py",
            ["experiment=e4e_demo", "data.batch_size=-1"],
            "data.batch_size: expected an integer >= 1, found -1",
        ),
        ("evaluate.py", ["editing.reference.steps=abc"], "editing.reference.steps: expected int, found 'abc'"),
        ("evaluate.py", ["editing.text.steps=0"], "editing.text.steps: expected an integer >= 1, found 0"),
    ]
    for i, (script, args, message) in enumerate(cases):
        result = run(script, [*args, f"hydra.run.dir={tmp_path / str(i)}"])
        assert result.returncode == 2, (script, args, result.stderr[-2000:])
        assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_broken_image_fails_its_pair_the_report_is_written_and_the_exit_code_says_so(tmp_path):
    face(tmp_path / "a.png", 128)
    (tmp_path / "b.png").write_text("not a picture")
    pairs = csv_file(tmp_path / "pairs.csv", "id,source\na,a.png\nb,b.png\n")
    fast = ["editing.embedding.refinement=2", "editing.embedding.w_steps=2", "editing.embedding.fs_steps=2"]
    fast.append("editing.use_landmarks=false")
    result = run("evaluate.py", ["task=reconstruction", f"pairs={pairs}", f"hydra.run.dir={tmp_path / 'run'}", *fast])
    assert result.returncode == 1 and "1 edit(s) failed" in result.stderr, result.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["edits"] == 1 and summary["failures"] == 1 and (tmp_path / "run" / "report.html").is_file()
    assert "b.png: not a readable image" in (tmp_path / "run" / "edits.csv").read_text()
    partial = run(
        "evaluate.py",
        ["task=reconstruction", f"pairs={pairs}", f"hydra.run.dir={tmp_path / 'run2'}", "allow_failures=true", *fast],
    )
    assert partial.returncode == 0, partial.stderr[-2000:]


def test_missing_weights_name_the_key_that_set_them_and_prior_arguments_are_checked(tmp_path, capsys):
    from test_training import build_module

    from hairclipv2.editing.prior import main as prior_main
    from hairclipv2.weights import MissingCheckpointError

    with pytest.raises(Exception) as err:
        build_module(**{"model.stylegan_weights": str(tmp_path / "nope.pt")})
    cause = err.value
    while cause is not None and not isinstance(cause, MissingCheckpointError):
        cause = cause.__cause__
    assert cause is not None and "conf key model.stylegan_weights" in str(cause)
    for args, message in (
        (["--generator", "nope"], "--generator: expected one of"),
        (["--generator", "stylegan2_tiny", "--samples", "10"], "needs more than 64 samples"),
    ):
        with pytest.raises(SystemExit) as exit_:
            prior_main([str(tmp_path / "p.npz"), *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert prior_main([str(tmp_path / "p.npz"), "--generator", "stylegan2_tiny", "--ckpt", str(tmp_path / "x.pt")]) == 2
    assert "conf key --ckpt" in capsys.readouterr().err and not list(tmp_path.glob(".*tmp*"))


def test_checkpoints_are_written_whole_and_stale_temporary_files_removed(tmp_path):
    from hairclipv2.training.checkpointing import AtomicCheckpointIO

    stale = tmp_path / ".last.ckpt.tmp"
    stale.write_bytes(b"half a checkpoint from a killed write")
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, tmp_path / "last.ckpt")
    assert not stale.exists() and torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_writes_its_checkpoint_before_it_ends(tmp_path, signal_name):
    import signal
    import time

    from test_training import FAST, signal_training

    args = [a for a in FAST if not a.startswith(("trainer.max_steps", "checkpoint_every"))]
    args += ["trainer.max_steps=100000", "checkpoint_every=100000", f"hydra.run.dir={tmp_path}"]
    started = tmp_path / "csv" / "metrics.csv"  # written once the first steps are logged
    (tmp_path / "status.json").write_text('{"finished": true}')  # an earlier fit's, in the same folder

    def a_few_steps_in() -> bool:
        if not started.is_file():
            return False
        time.sleep(1.0)
        return True

    signal_training(args, a_few_steps_in, getattr(signal, signal_name))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] >= 1  # the periodic checkpoint never came: this one is the interruption's
    assert not (tmp_path / "status.json").exists()  # a chain of runs (world_chain.py) sees no finished run
