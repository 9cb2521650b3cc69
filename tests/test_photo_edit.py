"""Photo in, photo out: `python -m hairclipv2.edit` on skimage's astronaut (a 512 px photo whose face
is not at FFHQ alignment) with the small random-weight editor, and the paste-back on its own."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from hairclipv2.align import ffhq_quad
from hairclipv2.edit import main
from hairclipv2.paste import feathered_region, paste_back

SMALL = [
    "--set", "editing.embedding.w_steps=2", "--set", "editing.embedding.fs_steps=2", "--set", "editing.text.steps=2",
    "--set", "editing.embedding.refinement=2", "--set", "editing.colour.edit_steps=2",
    "--set", "editing.colour.final_steps=2", "--set", "editing.use_landmarks=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_paste_back_changes_only_the_weighted_pixels():
    photo = np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)
    quad = ffhq_quad(np.array([[40, 50], [60, 50], [50, 60], [42, 72], [58, 72]], dtype=np.float64))
    hair = torch.zeros(1, 1, 64, 64)
    hair[..., 5:20, 10:50] = 1
    region = feathered_region(hair, grow=2, feather=5)
    assert region.max() == 1 and 0 < region.mean() < 0.5 and ((region > 0) & (region < 1)).any()  # soft edges
    pasted, weight = paste_back(photo, torch.ones(3, 64, 64), region, quad)
    assert pasted.shape == photo.shape and weight.shape == photo.shape[:2]
    assert np.array_equal(pasted[weight == 0], photo[weight == 0])  # bit for bit outside
    assert (pasted[weight == 1] == 255).all()  # the edit (white) inside
    assert (weight > 0).sum() < 0.5 * weight.size


def test_the_command_edits_the_photo_and_keeps_everything_else(astronaut, tmp_path, capsys, monkeypatch):
    import functools

    import hairclipv2.photo_command as edit

    from conftest import ThresholdParser

    # The random-weight BiSeNet of the demo finds no hair; a parser that does makes the region visible.
    monkeypatch.setattr(edit, "build_editor", functools.partial(edit.build_editor, parser=ThresholdParser()))
    out = tmp_path / "edited.png"
    assert main([str(astronaut), "--text", "short curly hair", "-o", str(out), *SMALL]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    for name in ("edited.png", "edited_aligned.png", "edited_edit.png", "edited_region.png"):
        assert name in printed and (tmp_path / name).is_file()
    # dlib finds her face and the mission patch: the command says which it edited, and how far the
    # edit moved her identity by dlib's trained network.
    assert "2 faces found; editing the largest" in captured.err
    assert "identity: dlib distance" in printed
    # each stage on stderr with its time, the optimisations with their steps (SMALL: 2 + 2, and 2)
    stages = captured.err.replace("\r", "\n")  # a finished bar is cleared with a carriage return
    assert re.search(r"^aligning +\d+\.\d s$", stages, re.M)
    assert re.search(r"^embedding +\d+\.\d s \(4 steps\)$", stages, re.M)
    assert re.search(r"^text proxy +\d+\.\d s \(2 steps\)$", stages, re.M)
    before = np.asarray(Image.open(astronaut).convert("RGB"))
    after = np.asarray(Image.open(out))
    region = np.asarray(Image.open(tmp_path / "edited_region.png"))
    assert after.shape == before.shape == (512, 512, 3)
    assert np.array_equal(after[region == 0], before[region == 0])  # outside the feathered region: the photo
    assert 0.01 < (region > 0).mean() < 0.9
    assert (after[region > 128] != before[region > 128]).any()  # inside: the edit
    assert Image.open(tmp_path / "edited_aligned.png").size == (64, 64)  # the demo generator's size


def test_help_and_argument_errors_need_neither_torch_nor_the_editor():
    """`--help` answers at once: the command line is parsed before torch is imported."""
    import subprocess
    import sys

    code = "import sys; from hairclipv2.edit import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("False") and "--weights" in done.stdout


def test_an_edit_that_changes_nothing_says_so_and_exits_3(astronaut, tmp_path, capsys, monkeypatch):
    """A parser that finds no hair (the random demo parser's usual answer): no region, the photo comes
    back bit for bit, and the command must not report it as an edit."""
    import functools

    import hairclipv2.photo_command as edit

    from conftest import ThresholdParser

    class NoHair(ThresholdParser):
        def forward(self, x):
            full, half = super().forward(x)
            return full.index_fill(1, torch.tensor([10]), -100.0), half.index_fill(1, torch.tensor([10]), -100.0)

    monkeypatch.setattr(edit, "build_editor", functools.partial(edit.build_editor, parser=NoHair()))
    out = tmp_path / "same.png"
    assert main([str(astronaut), "--rgb", "200,30,30", "-o", str(out), *SMALL]) == 3
    assert "nothing was changed" in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(astronaut).convert("RGB")))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "  "], "the hairstyle text is empty"),
        (["--color", ""], "the colour text is empty"),
        (["--rgb", "300,0,0"], "--rgb: rgb must be 'r,g,b' with values in 0..255"),
        (["--reference", "missing.jpg"], "image not found"),
        (["--sketch", "SKETCH"], "is 20x20, expected 64x64 or 32x32"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(astronaut, tmp_path, capsys, args, message):
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "sketch.png")
    args = [str(tmp_path / "sketch.png") if a == "SKETCH" else a for a in args]
    assert main([str(astronaut), *args, "-o", str(tmp_path / "out.png"), *SMALL]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out.png").exists()


def test_a_photo_without_a_face_is_refused(tmp_path, capsys):
    Image.fromarray(np.full((128, 128, 3), 200, np.uint8)).save(tmp_path / "wall.png")
    assert main([str(tmp_path / "wall.png"), "--text", "bob", "-o", str(tmp_path / "out.png")]) == 2
    assert "no face found" in capsys.readouterr().err and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "editing.text.steps=abc"], "editing.text.steps: expected int, found 'abc'"),
        (["--set", "editing.nosuch=1"], "Could not override 'editing.nosuch'"),
        (["--weights", "EMPTY"], "6 pretrained file(s) missing for the hair editor"),
        (["--weights", "NOWHERE"], "does not exist"),
    ],
)
def test_settings_and_weights_are_refused_before_any_work(astronaut, tmp_path, capsys, monkeypatch, args, message):
    import hairclipv2.photo_command as edit

    def no_work(*args, **kwargs):
        raise AssertionError("the face was aligned before the settings were checked")

    monkeypatch.setattr(edit, "FaceAligner", no_work)
    (tmp_path / "empty").mkdir()
    args = [{"EMPTY": str(tmp_path / "empty"), "NOWHERE": str(tmp_path / "nowhere")}.get(a, a) for a in args]
    assert main([str(astronaut), "--text", "bob", "-o", str(tmp_path / "out.png"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_the_fast_preset_shortens_every_optimisation_but_the_ones_given():
    from hairclipv2.pipeline import FAST_KEYS, command_config

    full, _ = command_config(None)
    fast, changed = command_config(None, ["editing.text.steps=7"], fast=True)
    for key in FAST_KEYS:
        before, after = OmegaConf.select(full.editing, key), OmegaConf.select(fast.editing, key)
        assert after == (7 if key == "text.steps" else max(3, round(before / 10))), key
    assert "editing.embedding.w_steps: 400 -> 40" in changed and not any("text.steps" in c for c in changed)
    official, changed = command_config(None, ["experiment=hairclipv2_ffhq", "editing.random_weights=true"], fast=True)
    assert official.editing.embedding.w_steps == 110 and "editing.embedding.fs_steps: 250 -> 25" in changed


def test_stage_report_prints_each_stage_with_its_time_and_steps():
    import io

    from hairclipv2.editing.optim import observe_steps, run_adam
    from hairclipv2.photo_command import StageReport

    stream = io.StringIO()
    report = StageReport(stream)
    x = torch.zeros(2, requires_grad=True)
    report("embedding")
    with observe_steps(report.step):
        run_adam([x], 0.1, 3, lambda: (x - 1).pow(2).sum(0, keepdim=True))
        run_adam([x], 0.1, 2, lambda: (x - 1).pow(2).sum(0, keepdim=True))
    report("blending")
    report.finish()
    run_adam([x], 0.1, 2, lambda: (x - 1).pow(2).sum(0, keepdim=True))  # outside the context: not counted
    lines = [line for line in stream.getvalue().splitlines() if re.match(r"^\w[\w ]+ +\d+\.\d s", line)]
    assert [re.sub(r"\d+\.\d s", "T", re.sub(" +", " ", line)) for line in lines] == [
        "embedding T (5 steps)",
        "blending T",
    ]


@pytest.mark.slow  # 50 s on 2 cores
def test_the_same_seed_gives_the_same_edit_in_every_process(astronaut, tmp_path):
    """The random networks (the world editor's backbones, the demo's every network) and the edit are
    drawn from --seed: two processes agree bit for bit, another seed gives another edit."""
    import subprocess
    import sys

    def edit(seed: int, name: str, editor: tuple[str, ...] = ()) -> np.ndarray:
        out = tmp_path / f"{name}.png"
        argv = [str(astronaut), "--text", "bob", "-o", str(out), "--seed", str(seed), *editor, *SMALL]
        code = f"import sys; from hairclipv2.edit import main; sys.exit(main({argv!r}))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode in (0, 3), done.stderr[-2000:]
        return np.asarray(Image.open(tmp_path / f"{name}_edit.png"))

    first, again, other = edit(5, "a"), edit(5, "b"), edit(6, "c")  # the world's editor: its random backbones
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    demo = ("--set", "experiment=hairclipv2_demo")  # every network random
    assert np.array_equal(edit(5, "d", demo), edit(5, "e", demo))


def test_an_aligned_face_is_edited_without_detection_and_pasted_back_in_place(tmp_path, capsys, monkeypatch):
    """--aligned: a world face (dlib sees no cartoon) is the crop itself; the edit comes back at the
    picture's own size, every pixel outside the region as it was. A world face written by
    `python -m hairclipv2.world`."""
    import functools

    import hairclipv2.photo_command as edit
    from hairclipv2.world.__main__ import main as world_main

    from conftest import ThresholdParser

    assert world_main([str(tmp_path / "faces"), "--n", "2", "--seed", "3"]) == 0
    captions = (tmp_path / "faces" / "captions.txt").read_text().splitlines()
    assert [c.split("\t")[0] for c in captions] == ["world_3_0.png", "world_3_1.png"] and "hair" in captions[0]
    face = tmp_path / "faces" / "world_3_0.png"
    monkeypatch.setattr(edit, "build_editor", functools.partial(edit.build_editor, parser=ThresholdParser()))
    out = tmp_path / "edited.png"
    assert main([str(face), "--aligned", "--text", "bob", "-o", str(out), *SMALL]) == 0
    assert "faces found" not in capsys.readouterr().err  # no detection ran
    before, after = np.asarray(Image.open(face).convert("RGB")), np.asarray(Image.open(out))
    region = np.asarray(Image.open(tmp_path / "edited_region.png"))
    assert after.shape == before.shape == (64, 64, 3) and (region > 0).any()
    assert np.array_equal(after[region == 0], before[region == 0])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "edited_aligned.png")), before)  # the crop is the face

    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "wide.png")
    assert main([str(tmp_path / "wide.png"), "--aligned", "--text", "bob", "-o", str(tmp_path / "w.png")]) == 2
    assert "--aligned takes a square, already aligned face; this picture is 60x40" in capsys.readouterr().err
