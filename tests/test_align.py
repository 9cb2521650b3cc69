"""FFHQ alignment on a real photograph (skimage's astronaut) and the folder command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from hairclipv2.align import FaceAligner, NoFaceError, ffhq_quad

ROOT = Path(__file__).resolve().parent.parent
FACES = ROOT.parent / "shared" / "faces"


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner("mtcnn")


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(data.astronaut())


def test_astronaut_is_aligned_to_the_ffhq_template(aligner, astronaut):
    face = aligner.align(astronaut, output_size=256)
    assert face.n_faces == 1 and face.image.size == (256, 256)
    # The recipe puts the eyes at 3/8 and 5/8 of the width when the eye distance sets the scale.
    eye_l, eye_r = face.aligned_landmarks[0], face.aligned_landmarks[1]
    assert abs(eye_l[0] - 96) <= 1 and abs(eye_r[0] - 160) <= 1
    # Detected again on the aligned picture: the eye line is level and every landmark is where the
    # recipe's transform says it is.
    again, n = aligner.landmarks(face.image)
    assert n == 1
    angle = np.degrees(np.arctan2(*(again[1] - again[0])[::-1]))
    assert abs(angle) < 1.0
    assert np.abs(again - face.aligned_landmarks).max() < 3.0


def test_quad_maps_landmarks_consistently():
    """A symmetric face turned by 10 degrees comes out level, centred, eyes at 3/8 and 5/8."""
    face = np.array([[-30.0, 0], [30, 0], [0, 30], [-25, 66], [25, 66]])  # eye-mouth 66 < 60 * 2 / 1.8
    t = np.radians(10)
    lm = face @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + [200, 150]
    quad = ffhq_quad(lm)
    out = quad.to_output(lm, 1024)
    e = out[1] - out[0]
    assert abs(np.degrees(np.arctan2(e[1], e[0]))) < 1e-9
    np.testing.assert_allclose(out[:2, 0], [384, 640], atol=1e-9)
    assert abs(out[2, 0] - 512) < 1e-9
    corners = quad.to_output(quad.corners, 1024)
    np.testing.assert_allclose(corners, [[0, 0], [0, 1024], [1024, 1024], [1024, 0]], atol=1e-9)


def test_grayscale_and_rgba_are_converted(aligner, astronaut):
    for mode in ("L", "RGBA"):
        face = aligner.align(astronaut.convert(mode), output_size=128)
        assert face.image.mode == "RGB" and face.n_faces == 1


def test_no_face_is_a_clear_error(aligner):
    blank = Image.fromarray(np.full((200, 200, 3), 127, dtype=np.uint8))
    with pytest.raises(NoFaceError, match="blank.png: no face found"):
        aligner.align(blank, name="blank.png")


@pytest.mark.slow
def test_folder_command_reports_what_it_skipped(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    astronaut.save(src / "astronaut.jpg")
    Image.fromarray(np.full((120, 120), 40, dtype=np.uint8)).save(src / "wall.png")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = subprocess.run(
        [sys.executable, "-m", "hairclipv2.align", str(src), str(tmp_path / "out"), "--size", "128"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "aligned 1 image(s)" in result.stdout and "skipped 2" in result.stdout
    report = json.loads((tmp_path / "out" / "align_report.json").read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert "no face found" in reasons["wall.png"] and "not a readable image" in reasons["corrupt.jpg"]
    assert Image.open(tmp_path / "out" / "astronaut.png").size == (128, 128)
    assert not list((tmp_path / "out").glob(".*.tmp"))
    missing = subprocess.run(
        [sys.executable, "-m", "hairclipv2.align", str(tmp_path / "nope"), str(tmp_path / "o2")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode == 1 and "input folder not found" in missing.stderr


def test_datamodule_aligns_raw_photographs(tmp_path, astronaut):
    from datamodules.image_folder import ImageFolderDataModule

    for name in ("train", "test"):
        (tmp_path / name).mkdir()
        astronaut.save(tmp_path / name / "a.png")
    dm = ImageFolderDataModule(
        str(tmp_path / "train"),
        str(tmp_path / "test"),
        image_size=64,
        num_workers=0,
        test_workers=0,
        align=True,
        aligned_dir=str(tmp_path / "aligned"),
    )
    assert dm.report()["train"]["images"] == 1 and dm.report()["train"]["align_skipped"] == []
    assert Image.open(tmp_path / "aligned" / "train" / "a.png").size == (64, 64)


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/faces (real aligned portraits) is not present")
def test_already_aligned_ffhq_portraits_stay_where_they_are(aligner):
    """An FFHQ-aligned portrait aligned again lands on itself: landmarks move by < 1.5 % of the size."""
    img = Image.open(FACES / "168125.jpg").convert("RGB").resize((256, 256), Image.LANCZOS)
    face = aligner.align(img, output_size=256)
    before, _ = aligner.landmarks(img)
    assert np.abs(face.aligned_landmarks - before).max() < 0.015 * 256
