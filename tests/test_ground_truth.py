"""Ground-truth metrics on the world: exact targets score perfectly, and the numbers move the way an
edit's quality does (a wrong colour, a hair mask off target, a changed background)."""

from __future__ import annotations

import math

import torch

from hairclipv2.evaluation.ground_truth import ciede2000, ground_truth_metrics, hair_iou, region_psnr
from hairclipv2.world import HAIR_COLOURS, World

WORLD = World()


def world_pair(seed: int = 4):
    z = WORLD.z(4, seed)
    z[:, 14] = 1.0  # every face has hair
    faces = WORLD.attributes(z)
    return faces, WORLD.render(faces)


def test_the_exact_target_scores_perfectly_and_a_bald_pair_has_no_hair_region():
    faces, shot = world_pair()
    m = ground_truth_metrics(shot.image, shot.image, shot.hair, shot.hair, shot.hair, colour=True)
    assert (m["gt_psnr_hair"] > 90).all() and (m["gt_psnr_nonhair"] > 90).all()
    assert torch.equal(m["gt_hair_iou"], torch.ones(4)) and (m["gt_colour_de2000"] < 1e-6).all()
    bald = WORLD.render(faces.bald())
    m = ground_truth_metrics(bald.image, bald.image, bald.hair, bald.hair, bald.hair)
    assert torch.isnan(m["gt_psnr_hair"]).all() and torch.equal(m["gt_hair_iou"], torch.ones(4))


def test_a_colour_edit_scores_by_how_close_its_hair_colour_is():
    faces, shot = world_pair()
    red = WORLD.render(faces.with_hair_colour(torch.tensor(HAIR_COLOURS["red"])))
    auburn = WORLD.render(faces.with_hair_colour(torch.tensor(HAIR_COLOURS["auburn"])))
    blue = WORLD.render(faces.with_hair_colour(torch.tensor(HAIR_COLOURS["blue"])))
    score = lambda r: ground_truth_metrics(r.image, red.image, shot.hair, red.hair, r.hair, colour=True)  # noqa: E731
    near, far = score(auburn), score(blue)
    assert (near["gt_colour_de2000"] < far["gt_colour_de2000"]).all() and (far["gt_colour_de2000"] > 30).all()
    assert (near["gt_psnr_hair"] > far["gt_psnr_hair"]).all()
    assert (far["gt_psnr_nonhair"] > 90).all()  # the colour edits left everything else as it was


def test_a_changed_background_lowers_only_the_non_hair_psnr():
    _, shot = world_pair()
    moved = shot.image.clone()
    moved[:, :, :4] = 1.0  # the top rows: background (and hair tips) painted white
    psnr_bg = region_psnr(moved, shot.image, 1 - (shot.hair > 0.5).float())
    assert (psnr_bg < 30).all()
    assert math.isclose(float(ciede2000(torch.tensor([[1.0, 0, 0]]), torch.tensor([[1.0, 0, 0]]))[0]), 0.0)


def test_hair_iou_counts_overlap():
    a = torch.zeros(1, 1, 8, 8)
    b = torch.zeros(1, 1, 8, 8)
    a[..., :4, :] = 1
    b[..., 2:6, :] = 1
    assert math.isclose(float(hair_iou(a, b)[0]), 16 / 48, rel_tol=1e-6)
