"""dlib's face-recognition ResNet as the identity metric, on a real photograph."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data

from hairclipv2 import dlib_models
from hairclipv2.align import FaceAligner
from hairclipv2.io import pil_to_tensor

pytestmark = pytest.mark.skipif(not dlib_models.available(), reason="dlib-bin / face_recognition_models missing")
FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"


@pytest.fixture(scope="module")
def crops():
    aligner, photo = FaceAligner("dlib68"), Image.fromarray(data.astronaut())
    her = pil_to_tensor(aligner.align(photo, 256).image)[None]
    patch = pil_to_tensor(aligner.align(photo, 256, face="last").image)[None]  # the mission patch
    return her, patch


@pytest.fixture(scope="module")
def identity():
    from hairclipv2.evaluation.dlib_identity import DlibIdentity

    return DlibIdentity()


def test_a_mirrored_crop_is_still_her_and_the_patch_is_not(identity, crops):
    her, patch = crops
    pairs = torch.cat([her, her, her]), torch.cat([her, her.flip(-1), patch])
    distance = identity.distance(*pairs)
    assert distance[0] == 0 and distance[1] < 0.3 < 0.6 < distance[2]
    similarity = identity.similarity(*pairs)
    assert similarity[0] > similarity[1] > similarity[2]


def test_a_small_picture_of_her_is_her(identity, crops):
    """A 64 px version (upsampled to the detector's range) stays within dlib's same-person distance."""
    her, _ = crops
    small = torch.nn.functional.interpolate(her, size=64, mode="area")
    assert identity.distance(her, small) < 0.6


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/faces (real aligned portraits) is not present")
def test_other_people_are_further_than_her_mirror_image(identity, crops):
    her, _ = crops
    others = [pil_to_tensor(Image.open(p).convert("RGB").resize((256, 256)))[None] for p in sorted(FACES.glob("*.jpg"))]
    mirror = identity.distance(her, her.flip(-1))
    assert (identity.distance(her.expand(len(others), -1, -1, -1), torch.cat(others)) > 2 * mirror).all()


def test_edit_metrics_report_it_beside_ir_se50(identity, crops):
    from callbacks.hair_metrics import HairEditMetrics
    from hairclipv2.losses import IDLoss, LPIPSLoss

    her, patch = crops
    metrics = HairEditMetrics(LPIPSLoss("alex", random_backbone=True), IDLoss(random_weights=True), None, identity)
    hair = torch.zeros(2, 1, 256, 256)
    values = metrics.per_edit(torch.cat([her, her]), torch.cat([her.flip(-1), patch]), hair, hair)
    assert values["identity_dlib_distance"][0] < 0.6 < values["identity_dlib_distance"][1]
    assert set(metrics.compute()) >= {"identity", "identity_dlib", "identity_dlib_distance"}
