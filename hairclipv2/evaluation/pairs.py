"""Pairs files for `evaluate.py`: which source gets which condition.

A CSV with a header row and one edit per row; paths are relative to the CSV's folder:

    task            columns (required | optional)
    hair_transfer   source, reference            | id, mask, sketch
    hair_text       source, text                 | id, mask, sketch
    hair_mask       source, mask                 | id
    hair_sketch     source, sketch               | id
    hair_color      source, and one of color_text, color_reference, rgb ("r,g,b", 0..255) | id
    reconstruction  source                       | id

`mask`: a single-channel PNG label map with HairCLIPv2's painting classes (0 background, 1 face,
6 ear, 10 hair), square, of the edit size or half of it (HairCLIPv2 paints at 512 for 1024 px);
`sketch`: a single-channel PNG of hair strokes (> 0 on a stroke), same sizes. Both are read and
checked with the other columns when `size` (the edit size) is given.

Or, for hair_transfer, HairFastGAN's triples: a `.txt` file with `face shape color` per line (image
paths relative to the file's folder; blank lines and `#` comments skipped): the hairstyle of `shape`
and the hair colour of `color` go to `face`. Each line's scenario follows from which images coincide
(SCENARIOS): the protocol's rows "shape and colour from different images", "shape only" (color ==
face), "colour only" (shape == face), "shape and colour from the same image" and "reconstruction"
(all three the same image: the hairstyle of the face itself).

Or a folder: DIR/pairs.csv if present; else DIR/sources/* (reconstruction) with, for hair_transfer,
DIR/references/<same stem>.*. Every row is checked before anything runs or is written: an unknown
column, an empty file, a missing image or a bad value is an error naming the file and the row.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
TASKS: dict[str, tuple[set[str], set[str]]] = {
    "hair_transfer": ({"source", "reference"}, {"id", "mask", "sketch"}),
    "hair_text": ({"source", "text"}, {"id", "mask", "sketch"}),
    "hair_mask": ({"source", "mask"}, {"id"}),
    "hair_sketch": ({"source", "sketch"}, {"id"}),
    "hair_color": ({"source"}, {"id", "color_text", "color_reference", "rgb"}),
    "reconstruction": ({"source"}, {"id"}),
}
COLOUR_COLUMNS = ("color_text", "color_reference", "rgb")
# Optional ground truth, any task (the world's pairs have it): the exact picture the edit should give,
# its hair coverage and the source's (grayscale PNGs, 255 = hair). Adds the gt_* metrics.
GROUND_TRUTH = ("target", "target_hair", "source_hair")
TASKS = {task: (required, optional | set(GROUND_TRUTH)) for task, (required, optional) in TASKS.items()}
PAINT_LABELS = (0, 1, 6, 10)


@dataclass
class Pair:
    row: int  # 1-based data row of the pairs file
    id: str
    source: Path
    reference: Path | None = None
    text: str | None = None
    color_text: str | None = None
    color_reference: Path | None = None
    rgb: tuple[int, int, int] | None = None
    mask: Path | None = None
    sketch: Path | None = None
    scenario: str | None = None  # triples: which images coincide (SCENARIOS)
    target: Path | None = None  # ground truth (GROUND_TRUTH)
    target_hair: Path | None = None
    source_hair: Path | None = None

    @property
    def condition(self) -> str:
        if self.scenario is not None:
            return f"shape {self.reference.name}, colour {self.color_reference.name}"
        for value in (
            self.text,
            self.color_text,
            self.reference,
            self.color_reference,
            self.rgb,
            self.mask,
            self.sketch,
        ):
            if value is not None:
                return value.name if isinstance(value, Path) else str(value)
        return ""


SCENARIOS = {
    "shape_and_color": "shape and colour from different images",
    "shape_only": "shape only (colour of the face itself)",
    "color_only": "colour only (hairstyle of the face itself)",
    "same_reference": "shape and colour from the same image",
    "reconstruction": "reconstruction (hairstyle and colour of the face itself)",
}


def scenario(face: Path, shape: Path, color: Path) -> str:
    """The triple's scenario (a key of SCENARIOS) from which of its images coincide."""
    if face == shape == color:
        return "reconstruction"
    if shape == color:
        return "same_reference"
    if color == face:
        return "shape_only"
    return "color_only" if shape == face else "shape_and_color"


class PairsError(ValueError):
    """A pairs file or folder that cannot be used (names the file and the row)."""


def _image(base: Path, value: str, where: str) -> Path:
    if not value.strip():
        raise PairsError(f"{where}: empty image path")
    if "\x00" in value:
        raise PairsError(f"{where}: the image path {value!r} holds a NUL character")
    path = (base / value.strip()).resolve()
    if not path.is_file():
        raise PairsError(f"{where}: image not found: {path}")
    return path


def parse_rgb(value: str, where: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in value.replace(" ", "").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(0 <= v <= 255 for v in parts):
        raise PairsError(f"{where}: rgb must be 'r,g,b' with values in 0..255, got {value!r}")
    return parts  # type: ignore[return-value]


ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def derived_id(name: str, where: str, seen: set[str]) -> str:
    """An id made from file names: every run of other characters becomes '_' (`my photo (1)` ->
    `my_photo_1`), cut to 100 characters; a clash with an earlier one asks for a rename."""
    pid = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("._-")[:100] or "image"
    if pid.lower() in seen:
        raise PairsError(f"{where}: the file name gives the id {pid!r}, as an earlier one does; rename one of them")
    return check_id(pid, where, seen)


def check_id(pid: str, where: str, seen: set[str]) -> str:
    """An output id: letters, digits, '.', '_', '-' (not first), at most 100 characters, unique
    whatever the case (ids name files: `a` and `A` would share one on some file systems)."""
    if not ID_PATTERN.fullmatch(pid):
        raise PairsError(
            f"{where}: id {pid[:120]!r} cannot name an output file: use at most 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if pid.lower() in seen:
        raise PairsError(f"{where}: duplicate id {pid!r} (ids are compared without case)")
    seen.add(pid.lower())
    return pid


def read_text(path: Path) -> str:
    """A CSV's text: UTF-8 (with or without Excel's BOM) or UTF-16 with its BOM; else a clear error."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PairsError(
            f"{path}: not UTF-8 or UTF-16 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); save it as UTF-8"
        ) from None


def read_label_png(path: Path, what: str, size: int | None, where: str) -> np.ndarray:
    """A mask or sketch PNG as an (L, L) uint8 array, checked (mode, squareness, size, labels)."""
    try:
        with Image.open(path) as img:
            img.load()
            mode, arr = img.mode, np.asarray(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise PairsError(f"{where}: {what} {path.name} is not a readable image ({type(exc).__name__}: {exc})") from None
    if mode not in ("L", "P") or arr.ndim != 2:
        raise PairsError(
            f"{where}: {what} {path.name} must be a single-channel (grayscale or palette) PNG of labels, found mode {mode}"
        )
    h, w = arr.shape
    if h != w or (size is not None and h not in (size, size // 2)):
        want = f"{size}x{size} or {size // 2}x{size // 2}" if size is not None else "square"
        raise PairsError(f"{where}: {what} {path.name} is {w}x{h}, expected {want}")
    if what == "mask":
        unknown = sorted(set(np.unique(arr).tolist()) - set(PAINT_LABELS))
        if unknown:
            raise PairsError(
                f"{where}: mask {path.name} holds labels {unknown}; painted masks use {list(PAINT_LABELS)} (background, face, ear, hair)"
            )
    elif not arr.any():
        raise PairsError(f"{where}: sketch {path.name} has no stroke (every pixel is 0)")
    return arr.astype(np.uint8)


def read_pairs_csv(path: str | Path, task: str, size: int | None = None) -> list[Pair]:
    path = Path(path)
    if task not in TASKS:
        raise PairsError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    if not path.is_file():
        raise PairsError(f"pairs file not found: {path}")
    required, optional = TASKS[task]
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if not reader.fieldnames:
        raise PairsError(f"{path}: empty file (expected a header row with {sorted(required)})")
    columns = {c.strip() for c in reader.fieldnames}
    unknown = sorted(columns - required - optional)
    if unknown:
        raise PairsError(
            f"{path}: unknown column(s) {unknown} for task {task}; expected {sorted(required)} and optionally {sorted(optional)}"
        )
    missing = sorted(required - columns)
    if missing:
        raise PairsError(f"{path}: missing column(s) {missing} for task {task}")
    rows = []
    for i, r in enumerate(reader, start=1):
        if None in r:  # csv puts values past the header's columns under the key None
            raise PairsError(
                f"{path}, row {i}: {len(r[None])} value(s) more than the header's {len(reader.fieldnames)} columns "
                f"({r[None]!r}); quote values that contain commas"
            )
        rows.append({k.strip(): (v or "") for k, v in r.items()})
    if not rows:
        raise PairsError(f"{path}: no rows after the header")
    pairs, ids = [], set()
    for i, r in enumerate(rows, start=1):
        where = f"{path}, row {i}"
        pid = check_id(r.get("id", "").strip() or f"{i:04d}", where, ids)
        pair = Pair(i, pid, _image(path.parent, r["source"], where))
        if task == "hair_transfer":
            pair.reference = _image(path.parent, r["reference"], where)
        elif task == "hair_text":
            if not r["text"].strip():
                raise PairsError(f"{where}: empty text")
            pair.text = r["text"].strip()
        for what in ("mask", "sketch"):
            if r.get(what, "").strip():
                setattr(pair, what, _image(path.parent, r[what], where))
                read_label_png(getattr(pair, what), what, size, where)
            elif what in required:
                raise PairsError(f"{where}: empty {what} path")
        truth = [c for c in GROUND_TRUTH if r.get(c, "").strip()]
        if truth and len(truth) != len(GROUND_TRUTH):
            raise PairsError(f"{where}: ground truth needs all of {list(GROUND_TRUTH)}, got {truth}")
        for column in truth:
            setattr(pair, column, _image(path.parent, r[column], where))
        if task == "hair_color":
            given = [c for c in COLOUR_COLUMNS if r.get(c, "").strip()]
            if len(given) != 1:
                raise PairsError(f"{where}: give exactly one of {list(COLOUR_COLUMNS)}, got {given or 'none'}")
            col = given[0]
            if col == "color_text":
                pair.color_text = r[col].strip()
            elif col == "color_reference":
                pair.color_reference = _image(path.parent, r[col], where)
            else:
                pair.rgb = parse_rgb(r[col], where)
        pairs.append(pair)
    return pairs


def read_triples(path: str | Path) -> list[Pair]:
    """HairFastGAN's `face shape color` lines as hair_transfer pairs (reference: the shape image,
    color_reference: the colour image), every line checked before any edit."""
    path = Path(path)
    pairs, ids = [], set()
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {number}"
        fields = line.split()
        if len(fields) != 3:
            raise PairsError(f"{where}: expected 3 image names 'face shape color', got {len(fields)}: {line[:120]!r}")
        face, shape, color = (_image(path.parent, f, where) for f in fields)
        pid = derived_id(f"{len(pairs) + 1:04d}_{face.stem}_{shape.stem}_{color.stem}", where, ids)
        pair = Pair(number, pid, face, reference=shape, color_reference=color, scenario=scenario(face, shape, color))
        pairs.append(pair)
    if not pairs:
        raise PairsError(f"{path}: no triples (expected lines 'face shape color')")
    return pairs


def read_pairs(path: str | Path, task: str, size: int | None = None) -> list[Pair]:
    """Pairs from a CSV file or a folder (see the module docstring); `size`: the edit size, against
    which masks and sketches are checked."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if task != "hair_transfer":
            raise PairsError(f"{path}: a triples file ('face shape color' lines) is for task=hair_transfer, not {task}")
        if not path.is_file():
            raise PairsError(f"pairs file not found: {path}")
        return read_triples(path)
    if path.is_dir():
        if (path / "pairs.csv").is_file():
            return read_pairs_csv(path / "pairs.csv", task, size)
        if task not in ("hair_transfer", "reconstruction"):
            raise PairsError(f"{path}: a folder without pairs.csv only works for hair_transfer and reconstruction")
        sources = sorted(p for p in (path / "sources").glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not sources:
            raise PairsError(f"{path}/sources: no images")
        pairs, ids = [], set()
        for i, src in enumerate(sources, start=1):
            pair = Pair(i, derived_id(src.stem, f"{path / 'sources'}, {src.name}", ids), src.resolve())
            if task == "hair_transfer":
                refs = sorted(
                    p for p in (path / "references").glob(f"{src.stem}.*") if p.suffix.lower() in IMAGE_EXTENSIONS
                )
                if not refs:
                    raise PairsError(
                        f"{path}/references: no reference for source {src.name} (expected {src.stem}.<ext>)"
                    )
                pair.reference = refs[0].resolve()
            pairs.append(pair)
        return pairs
    return read_pairs_csv(path, task, size)
