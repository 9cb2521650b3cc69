"""FFHQ face alignment: dlib's 68 landmarks (as FFHQ, e4e and HairCLIPv2 crop) or MTCNN's five.

NVlabs' FFHQ recipe (ffhq-dataset `recreate_aligned_images`), on the eye centres and mouth corners:

    e = (eye_l + eye_r) / 2,  m = (mouth_l + mouth_r) / 2,  e2e = eye_r - eye_l,  e2m = m - e
    x = e2e - rot90(e2m); x *= max(2 |e2e|, 1.8 |e2m|) / |x|;  y = rot90(x);  c = e + 0.1 e2m
    quad = [c - x - y, c - x + y, c + x + y, c + x - y]   (top-left, bottom-left, bottom-right, top-right)

then shrink, crop, reflect-pad with a blurred border when the quad leaves the photo, a bilinear QUAD
transform to `transform_size` px and a Lanczos resize to the output size. With dlib's 68 points (eyes:
the means of points 36-41 and 42-47, mouth corners 48 and 54) this is HairCLIPv2's `align_face`
(output 1024, transform 4096) and, with output and transform 256 and `face="last"`, e4e's.

    python -m hairclipv2.align IN_DIR OUT_DIR [--size 1024] [--landmarks dlib68|mtcnn] [--face largest]
writes OUT_DIR/<name>.png for every photo with a face and OUT_DIR/align_report.json listing what was
skipped and why (no face, unreadable file) and which face was taken where there were several.
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

from . import dlib_models
from .io import open_rgb, save_image_atomic

TRANSFORM_SIZE = 4096
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
LANDMARKS = ("dlib68", "mtcnn")
FaceChoice = int | str  # an index in detection order, "largest" or "last"


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


def eyes_and_mouth(landmarks: np.ndarray) -> tuple[np.ndarray, ...]:
    """(eye_l, eye_r, mouth_l, mouth_r) from dlib's 68 points or MTCNN's five, (K, 2) in (x, y)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape == (68, 2):
        return lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]
    if lm.shape == (5, 2):  # eye_l, eye_r, nose, mouth_l, mouth_r
        return lm[0], lm[1], lm[3], lm[4]
    raise ValueError(f"landmarks must have shape (68, 2) (dlib) or (5, 2) (MTCNN), got {lm.shape}")


def ffhq_quad(landmarks: np.ndarray) -> FaceQuad:
    """The FFHQ quad from dlib's 68 landmarks or MTCNN's five."""
    eye_l, eye_r, mouth_l, mouth_r = eyes_and_mouth(landmarks)
    eye_avg, mouth_avg = (eye_l + eye_r) * 0.5, (mouth_l + mouth_r) * 0.5
    eye_to_eye, eye_to_mouth = eye_r - eye_l, mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    return FaceQuad(eye_avg + eye_to_mouth * 0.1, x, y)


def warp_to_quad(
    img: Image.Image, quad: FaceQuad, output_size: int = 1024, transform_size: int = TRANSFORM_SIZE
) -> Image.Image:
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
    img = img.transform((transform_size, transform_size), Image.QUAD, (corners + 0.5).flatten(), Image.BILINEAR)
    return img.resize((output_size, output_size), Image.LANCZOS) if output_size < transform_size else img


@dataclass
class DetectedFace:
    landmarks: np.ndarray  # (68, 2) int (dlib) or (5, 2) float (MTCNN), photo pixels (x, y)
    box: tuple[float, float, float, float]  # the detector's rectangle (left, top, right, bottom)

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


@dataclass
class AlignedFace:
    image: Image.Image  # output_size x output_size RGB
    landmarks: np.ndarray  # the detected landmarks in the photo, (68, 2) or (5, 2)
    aligned_landmarks: np.ndarray  # where they land in `image`
    quad: FaceQuad
    n_faces: int  # faces found
    index: int = 0  # which of them (detection order) was aligned
    detector: str = "dlib68"  # the landmarks used (dlib68, or mtcnn: asked for, or dlib found no face)


def default_landmarks() -> str:
    """dlib68 (the official crop) when dlib and its predictor are installed, otherwise mtcnn."""
    return "dlib68" if dlib_models.available() else "mtcnn"


def choose_face(faces: list[DetectedFace], face: FaceChoice) -> int:
    """The index of `face` among the detections: an index, "largest" (detector box) or "last"."""
    if face == "largest":
        return max(range(len(faces)), key=lambda i: faces[i].area)
    if face == "last":
        return len(faces) - 1
    if isinstance(face, str):
        raise ValueError(f"face must be an index, 'largest' or 'last', got {face!r}")
    index = int(face)
    if not -len(faces) <= index < len(faces):
        raise ValueError(f"face {index} asked for, but {len(faces)} face(s) were found")
    return index % len(faces)


def parse_face(text: str) -> FaceChoice:
    """A command line's face choice: "largest", "last" or an integer index."""
    if text in ("largest", "last"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected largest, last or a face index, got {text!r}") from None


class FaceAligner:
    """Face landmarks and the FFHQ crop.

    `landmarks`: "dlib68" (dlib's HOG detector, upsampled once, and its 68-point predictor: the
    official crop), "mtcnn" (facenet-pytorch's five points), or None for dlib68 when installed.
    `fallback`: with dlib68, retry with MTCNN when dlib finds no face (profile views); the aligned
    face says which detector it came from.
    """

    def __init__(self, landmarks: str | None = None, device: str = "cpu", fallback: bool = True):
        landmarks = landmarks or default_landmarks()
        if landmarks not in LANDMARKS:
            raise ValueError(f"landmarks must be one of {LANDMARKS}, got {landmarks!r}")
        self.kind, self.device, self.fallback = landmarks, device, fallback
        self._mtcnn = None

    @property
    def mtcnn(self):
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(keep_all=True, device=self.device)
        return self._mtcnn

    def detect_dlib(self, img: Image.Image) -> list[DetectedFace]:
        pixels = np.asarray(img.convert("RGB"))
        predictor = dlib_models.shape_predictor()
        found = []
        for rect in dlib_models.frontal_face_detector()(pixels, 1):
            points = np.array([[p.x, p.y] for p in predictor(pixels, rect).parts()], dtype=np.int64)
            found.append(DetectedFace(points, (rect.left(), rect.top(), rect.right(), rect.bottom())))
        return found

    def detect_mtcnn(self, img: Image.Image) -> list[DetectedFace]:
        boxes, _, points = self.mtcnn.detect(img.convert("RGB"), landmarks=True)
        if points is None:
            return []
        return [DetectedFace(np.asarray(p, dtype=np.float64), tuple(map(float, b))) for b, p in zip(boxes, points)]

    def detect(self, img: Image.Image, name: str = "image") -> tuple[list[DetectedFace], str]:
        """Every face, in the detector's order, and the detector that found them."""
        if self.kind == "dlib68":
            found = self.detect_dlib(img)
            if found or not self.fallback:
                if not found:
                    raise NoFaceError(f"{name}: no face found (dlib)")
                return found, "dlib68"
        found = self.detect_mtcnn(img)
        if not found:
            tried = "neither dlib nor MTCNN" if self.kind == "dlib68" else "MTCNN"
            raise NoFaceError(f"{name}: no face found ({tried} found one)")
        return found, "mtcnn"

    def faces(self, img: Image.Image, name: str = "image") -> list[np.ndarray]:
        """Every face's landmarks in the detector's order: (68, 2) integers with dlib."""
        return [f.landmarks for f in self.detect(img, name)[0]]

    def landmarks(self, img: Image.Image, name: str = "image") -> tuple[np.ndarray, int]:
        """The landmarks of the largest face, and how many faces were found."""
        found, _ = self.detect(img, name)
        return found[choose_face(found, "largest")].landmarks, len(found)

    def align(
        self,
        img: Image.Image,
        output_size: int = 1024,
        name: str = "image",
        face: FaceChoice = "largest",
        transform_size: int = TRANSFORM_SIZE,
    ) -> AlignedFace:
        """The FFHQ crop of one face. HairCLIPv2's: output 1024, transform 4096 (the default) with
        face 0, 1, ... (it writes them all); e4e's `align_face`: output and transform 256, face "last"."""
        img = img.convert("RGB")  # grayscale, RGBA and palette images
        found, detector = self.detect(img, name)
        index = choose_face(found, face)
        lm = found[index].landmarks
        quad = ffhq_quad(lm)
        image = warp_to_quad(img, quad, output_size, transform_size)
        return AlignedFace(image, lm, quad.to_output(lm, output_size), quad, len(found), index, detector)


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
    face: FaceChoice = "largest",
    transform_size: int = TRANSFORM_SIZE,
) -> dict:
    """Align every image of in_dir into out_dir/<stem>.png (one face each: `face`); returns (and
    writes) the report."""
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
            aligned = aligner.align(open_rgb(path), output_size, str(path), face, transform_size)
        except (ValueError, NoFaceError) as exc:
            report["skipped"].append({"path": str(path), "reason": str(exc)})
            continue
        save_image_atomic(aligned.image, target)
        report["aligned"].append(
            {
                "path": str(path),
                "output": str(target),
                "faces_found": aligned.n_faces,
                "face": aligned.index,
                "landmarks": aligned.detector,
            }
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".align_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out_dir / "align_report.json")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FFHQ-align the faces of a folder of photographs.")
    parser.add_argument("in_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--size", type=int, default=1024, help="output size (1024 as FFHQ; 256 for the encoders)")
    parser.add_argument("--overwrite", action="store_true", help="replace crops already in OUT_DIR")
    parser.add_argument(
        "--landmarks",
        choices=LANDMARKS,
        default=None,
        help="dlib68: dlib's 68 points, the official FFHQ crop (default when dlib is installed); mtcnn: five points",
    )
    parser.add_argument(
        "--face",
        type=parse_face,
        default="largest",
        help="which face of a photo with several: largest (default), last, or an index",
    )
    parser.add_argument(
        "--transform-size", type=int, default=TRANSFORM_SIZE, help="the QUAD transform's size (4096; e4e's: 256)"
    )
    args = parser.parse_args(argv)
    try:
        aligner = FaceAligner(args.landmarks)
        report = align_folder(
            args.in_dir, args.out_dir, args.size, aligner, args.overwrite, args.face, args.transform_size
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AlignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"aligned {len(report['aligned'])} image(s) into {args.out_dir}; skipped {len(report['skipped'])}")
    for item in report["aligned"]:
        if item["faces_found"] > 1 or item["landmarks"] != aligner.kind:
            print(
                f"  {item['path']}: took face {item['face']} of {item['faces_found']} ({item['landmarks']} landmarks)"
            )
    for item in report["skipped"]:
        print(f"  skipped {item['path']}: {item['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
