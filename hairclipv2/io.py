"""Image input/output: [-1, 1] tensors to PNG grids, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor, rounding: str = "truncate") -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8.

    `rounding="truncate"` is HairCLIPv2's `process_display_input` (`np.clip(255 * (x + 1) / 2, 0, 255)
    .astype(uint8)`, which drops the fraction); "round" rounds to the nearest value.
    """
    if rounding not in ("truncate", "round"):
        raise ValueError(f"rounding must be 'truncate' or 'round', got {rounding!r}")
    x = (images.detach().float().cpu() + 1) * 127.5
    x = x.round() if rounding == "round" else x
    return x.clamp(0, 255).to(torch.uint8).movedim(-3, -1).numpy()


def image_format(path: str | Path) -> str:
    """PIL's format for the file name's extension (".png" -> "PNG"); a ValueError naming the file and
    the extensions PIL writes otherwise."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "PNG"
    writable = {ext: fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
    if suffix not in writable:
        known = ", ".join(sorted(e for e in writable if e in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif")))
        raise ValueError(f"{path}: cannot write images as {suffix!r} (use one of {known})")
    return writable[suffix]


def save_image_atomic(image: Image.Image, path: str | Path) -> Path:
    """Save a PIL image through a temporary file and a rename: never a half-written file, and no
    temporary file left behind when the write fails (a full disk, a folder in the way)."""
    path = Path(path)
    fmt = image_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        image.save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_image_grid(rows: torch.Tensor, path: str | Path, pad: int = 2) -> Path:
    """Save (R, C, 3, H, W) images in [-1, 1] as an R x C grid PNG."""
    if rows.ndim != 5 or rows.shape[2] != 3:
        raise ValueError(f"rows must have shape (R, C, 3, H, W), got {tuple(rows.shape)}")
    r, c, _, h, w = rows.shape
    canvas = np.full((r * (h + pad) + pad, c * (w + pad) + pad, 3), 255, dtype=np.uint8)
    tiles = to_uint8(rows)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = tiles[i, j]
    return save_image_atomic(Image.fromarray(canvas), path)


MIN_IMAGE_SIDE = 32  # smaller pictures hold no face worth editing


def open_rgb(path: str | Path) -> Image.Image:
    """An image file fully decoded as 8-bit RGB, with errors naming the file: turned upright by its EXIF
    orientation (phone photos are often stored rotated); 16-bit and float images are scaled to 8 bits
    (not clipped: PIL's convert would turn most 16-bit pixels white); truncated, empty and non-image
    files, pictures over PIL's decompression limit and under MIN_IMAGE_SIDE px are refused."""
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()  # a full decode: verify() lets truncated JPEGs through
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img, dtype=np.float64)
                top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
                img = Image.fromarray((arr / top * 255).clip(0, 255).astype(np.uint8))
            rgb = img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{path}: too many pixels to open safely ({exc})") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    if min(rgb.size) < MIN_IMAGE_SIDE:
        raise ValueError(f"{path}: {rgb.size[0]}x{rgb.size[1]} px is too small (at least {MIN_IMAGE_SIDE} px a side)")
    return rgb


def read_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """An image file as (3, size, size) in [-1, 1] (RGB; LANCZOS resize), with errors naming the file."""
    img = open_rgb(path)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.LANCZOS)
    return pil_to_tensor(img)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).float() / 127.5 - 1
