"""Published numbers of the field per protocol, shown beside a run's own in the report.

Each row: the method, where the numbers come from (paper, table, data), and the values under this
project's metric names. Only numbers read from the cited source are listed.
"""

from __future__ import annotations

PUBLISHED: dict[str, list[dict]] = {
    "reconstruction": [
        {
            "method": "e4e",
            "source": "SFE (Bobkov et al., CVPR 2024), Table 1: CelebA-HQ test set, 1024 px",
            "metrics": {"lpips": 0.199, "l2": 0.047, "fid": 28.97, "ms_ssim": 0.625},
        },
    ],
    # HairFastGAN (arXiv 2404.01094) Table 1 and Stable-Hair Table 1 report FID / FID_CLIP per scenario;
    # their values are not transcribed yet (no offline copy of the tables was at hand).
    "hair_transfer": [],
}


def published(task: str) -> list[dict]:
    return PUBLISHED.get(task, [])
