"""FFHQ-style face alignment from facenet-pytorch MTCNN's five landmarks.

The crop follows the FFHQ recipe (NVlabs ffhq-dataset, `recreate_aligned_images`), with MTCNN's eye
centres and mouth corners in place of the dlib-68 averages:

    e = (eye_l + eye_r) / 2,  m = (mouth_l + mouth_r) / 2,  e2e = eye_r - eye_l,  e2m = m - e
    x = e2e - rot90(e2m); x *= max(2 |e2e|, 1.8 |e2m|) / |x|;  y = rot90(x);  c = e + 0.1 e2m
    quad = [c - x - y, c - x + y, c + x + y, c + x - y]   (top-left, bottom-left, bottom-right, top-right)

then shrink, crop, reflect-pad with a blurred border when the quad leaves the photo, a QUAD transform
to 4096 px and an antialiased resize to the output size (1024, and 256 for the encoders).

    python -m hairclipv2.align IN_DIR OUT_DIR [--size 1024] [--size256]
writes OUT_DIR/<name>.png for every photo with a face and OUT_DIR/align_report.json listing what was
skipped and why (no face, unreadable file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .io import open_rgb, save_image_atomic

TRANSFORM_SIZE = 4096
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class NoFaceError(ValueError):
    """The detector found no face in an image."""


@dataclass
class FaceQuad:
    """The oriented square of the FFHQ crop: centre c, half-axes x (to the right) and y (down)."""

    c: np.ndarray
    x: np.ndarray
    y: np.ndarray

    @property
    def corners(self) -> np.ndarray:
        c, x, y = self.c, self.x, self.y
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])

    @property
    def size(self) -> float:
        return float(np.hypot(*self.x) * 2)

    def to_output(self, points: np.ndarray, output_size: int) -> np.ndarray:
        """Where photo points (K, 2) land in the aligned output_size image."""
        d = np.asarray(points, dtype=np.float64) - self.c
        u = d @ self.x / (self.x @ self.x)
        v = d @ self.y / (self.y @ self.y)
        return np.stack([(u + 1) / 2, (v + 1) / 2], axis=1) * output_size


def ffhq_quad(landmarks5: np.ndarray) -> FaceQuad:
    """The FFHQ quad from MTCNN's landmarks (eye_l, eye_r, nose, mouth_l, mouth_r), (5, 2) in (x, y)."""
    lm = np.asarray(landmarks5, dtype=np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {lm.shape}")
    eye_l, eye_r, _, mouth_l, mouth_r = lm
    eye_avg, mouth_avg = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    eye_to_eye, eye_to_mouth = eye_r - eye_l, mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    return FaceQuad(eye_avg + eye_to_mouth * 0.1, x, y)


def warp_to_quad(img: Image.Image, quad: FaceQuad, output_size: int = 1024) -> Image.Image:
    """The FFHQ crop: shrink, crop, pad (reflect + blur), QUAD transform, resize."""
    corners, qsize = quad.corners.copy(), quad.size
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), Image.LANCZOS)
        corners /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        corners -= crop[:2]
    lo, hi = np.floor(corners.min(0)).astype(int), np.ceil(corners.max(0)).astype(int)
    pad = np.array(
        [
            max(-lo[0] + border, 0),
            max(-lo[1] + border, 0),
            max(hi[0] - img.size[0] + border, 0),
            max(hi[1] - img.size[1] + border, 0),
        ]
    )
    if pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        edge = np.maximum(
            1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
            1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]),
        )
        blur = qsize * 0.02
        arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(edge * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(edge, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        corners += pad[:2]
    img = img.transform((TRANSFORM_SIZE, TRANSFORM_SIZE), Image.QUAD, (corners + 0.5).flatten(), Image.BILINEAR)
    return img.resize((output_size, output_size), Image.LANCZOS) if output_size < TRANSFORM_SIZE else img


@dataclass
class AlignedFace:
    image: Image.Image  # output_size x output_size RGB
    landmarks: np.ndarray  # the detected landmarks in the photo, (5, 2)
    aligned_landmarks: np.ndarray  # where they land in `image`, (5, 2)
    quad: FaceQuad
    n_faces: int  # faces found; the most confident one is aligned


class FaceAligner:
    """MTCNN (weights ship with facenet-pytorch) + the FFHQ crop."""

    def __init__(self, device: str = "cpu"):
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, device=device)

    def landmarks(self, img: Image.Image, name: str = "image") -> tuple[np.ndarray, int]:
        """The five landmarks of the most confident face, and how many faces were found."""
        _, probs, points = self.mtcnn.detect(img.convert("RGB"), landmarks=True)
        if points is None or len(points) == 0:
            raise NoFaceError(f"{name}: no face found")
        return np.asarray(points[int(np.argmax(probs))], dtype=np.float64), len(points)

    def faces(self, img: Image.Image, name: str = "image") -> list[np.ndarray]:
        """The five landmarks of every face found, largest face (detector box area) first."""
        boxes, _, points = self.mtcnn.detect(img.convert("RGB"), landmarks=True)
        if points is None or len(points) == 0:
            raise NoFaceError(f"{name}: no face found")
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        return [np.asarray(points[i], dtype=np.float64) for i in np.argsort(areas)[::-1]]

    def align(self, img: Image.Image, output_size: int = 1024, name: str = "image") -> AlignedFace:
        img = img.convert("RGB")  # grayscale, RGBA and palette images
        lm, n = self.landmarks(img, name)
        quad = ffhq_quad(lm)
        return AlignedFace(warp_to_quad(img, quad, output_size), lm, quad.to_output(lm, output_size), quad, n)


class AlignError(ValueError):
    """Arguments that would lose or overwrite pictures (names the paths)."""


def planned_outputs(in_dir: Path, out_dir: Path, overwrite: bool) -> dict[Path, Path]:
    """input image -> out_dir/<stem>.png, checked before anything is written: the output folder is
    not the input folder nor inside it, no two inputs share a name without case and extension, and
    no existing file is replaced unless `overwrite`."""
    src, dst = in_dir.resolve(), out_dir.resolve()
    if dst == src or src in dst.parents:
        raise AlignError(
            f"the output folder {out_dir} is the input folder or inside it: the crops would mix with (or replace) the photos"
        )
    images = sorted(p for p in in_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    by_name: dict[str, list[Path]] = {}
    for p in images:
        by_name.setdefault(p.stem.lower(), []).append(p)
    clashes = [paths for paths in by_name.values() if len(paths) > 1]
    if clashes:
        listing = "; ".join(" and ".join(p.name for p in paths) for paths in clashes)
        raise AlignError(
            f"{in_dir}: these inputs would write the same output (<name>.png): {listing}; rename one of each"
        )
    plan = {p: out_dir / f"{p.stem}.png" for p in images}
    existing = [t for t in plan.values() if t.exists()]
    if existing and not overwrite:
        names = ", ".join(t.name for t in existing[:5]) + (
            f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        )
        raise AlignError(f"{out_dir} already holds {names}; pass --overwrite (overwrite=True) to replace them")
    return plan


def align_folder(
    in_dir: str | Path,
    out_dir: str | Path,
    output_size: int = 1024,
    aligner: FaceAligner | None = None,
    overwrite: bool = False,
) -> dict:
    """Align every image of in_dir into out_dir/<stem>.png; returns (and writes) the report."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {in_dir}")
    if output_size < 64:
        raise AlignError(f"output size must be at least 64 px, got {output_size}")
    plan = planned_outputs(in_dir, out_dir, overwrite)
    aligner = aligner or FaceAligner()
    report: dict = {"input": str(in_dir), "output": str(out_dir), "size": output_size, "aligned": [], "skipped": []}
    for path, target in plan.items():
        try:
            face = aligner.align(open_rgb(path), output_size, name=str(path))
        except (ValueError, NoFaceError) as exc:
            report["skipped"].append({"path": str(path), "reason": str(exc)})
            continue
        save_image_atomic(face.image, target)
        report["aligned"].append({"path": str(path), "output": str(target), "faces_found": face.n_faces})
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".align_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out_dir / "align_report.json")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FFHQ-align the faces of a folder of photographs (MTCNN landmarks).")
    parser.add_argument("in_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--size", type=int, default=1024, help="output size (1024 as FFHQ; 256 for the encoders)")
    parser.add_argument("--overwrite", action="store_true", help="replace crops already in OUT_DIR")
    args = parser.parse_args(argv)
    try:
        report = align_folder(args.in_dir, args.out_dir, args.size, overwrite=args.overwrite)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AlignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"aligned {len(report['aligned'])} image(s) into {args.out_dir}; skipped {len(report['skipped'])}")
    for item in report["skipped"]:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
