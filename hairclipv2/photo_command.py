"""The photo command's work (`python -m hairclipv2.edit`): the condition read and checked, the face
aligned, the edit made and pasted back, every output written or none. `hairclipv2/edit.py` parses
the command line first, so that `--help` and argument errors need neither torch nor the editor."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from tqdm import tqdm

from . import dlib_models
from .align import FaceAligner, NoFaceError
from .config import ConfigError
from .editing.optim import observe_steps
from .evaluation.pairs import PairsError, parse_rgb, read_label_png
from .io import image_format, open_rgb, pil_to_tensor, save_image_atomic
from .photo import Condition, EditError, PhotoEditor, prepare
from .pipeline import command_config, from_config
from .quiet import silence_known_noise
from .weights import CheckpointError, user_error

RANDOM_WARNING = "RANDOM WEIGHTS (no --weights): the edit is a meaningless picture; it shows that the pipeline runs"


class StageReport:
    """Each stage of the edit on stderr as it runs: a progress bar over its optimisation steps, then
    one line with its time (and steps)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.stage: str | None = None
        self.started = 0.0
        self.steps = 0
        self.bar: tqdm | None = None

    def __call__(self, stage: str) -> None:
        self.finish()
        self.stage, self.started, self.steps = stage, time.perf_counter(), 0

    def step(self, done: int, total: int) -> None:
        if self.bar is None or done == 1:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(  # disable=None: no bar where the stream is not a terminal (a log file)
                total=total, desc=f"{self.stage:14s}", leave=False, file=self.stream, unit="step", disable=None
            )
        self.bar.update(done - self.bar.n)
        self.steps += 1

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.stage is not None:
            steps = f" ({self.steps} steps)" if self.steps else ""
            print(f"{self.stage:14s} {time.perf_counter() - self.started:6.1f} s{steps}", file=self.stream)
            self.stage = None


def build_editor(cfg: Any, **parts: Any):
    """The editor of `cfg.editing`; `parts` replace arguments of its factory (a parser, say)."""
    return from_config(cfg, RANDOM_WARNING, **parts)


def read_condition_image(path: str, what: str, size: int) -> np.ndarray:
    try:
        return read_label_png(Path(path), what, size, f"--{what}")
    except (PairsError, FileNotFoundError) as exc:
        raise EditError(str(exc)) from None


def condition(args: argparse.Namespace, size: int) -> Condition:
    """The command's condition, its files read and checked (sketch and mask: size or half of it)."""
    rgb = None
    if args.rgb:
        try:
            rgb = parse_rgb(args.rgb, "--rgb")
        except PairsError as exc:
            raise EditError(str(exc)) from None
    return Condition(
        text=args.text,
        reference=open_rgb(args.reference) if args.reference else None,
        colour_text=args.color,
        rgb=rgb,
        sketch=read_condition_image(args.sketch, "sketch", size) if args.sketch else None,
        mask=read_condition_image(args.mask, "mask", size) if args.mask else None,
    )


def output_paths(args: argparse.Namespace, n_faces: int = 1) -> dict[str, Path]:
    """Every file the command writes, by name: OUT, and beside it the crops, edits and blend region."""
    target = Path(args.out) if args.out else Path(args.photo).with_name(f"{Path(args.photo).stem}_edited.png")
    stem = target.with_suffix("")
    paths = {"photo": target}
    for i in range(n_faces):
        tag = "" if n_faces == 1 else f"_face{i}"
        paths[f"aligned{tag}"] = Path(f"{stem}{tag}_aligned.png")
        paths[f"edit{tag}"] = Path(f"{stem}{tag}_edit.png")
    paths["region"] = Path(f"{stem}_region.png")
    return paths


def check_outputs(args: argparse.Namespace, paths: dict[str, Path]) -> None:
    """Before any work: no output is an input, a folder, or (without --overwrite) an existing file;
    OUT has an image extension; its folder can be written."""
    inputs = {Path(p).resolve(): flag for p, flag in _inputs(args)}
    for path in paths.values():
        if path.resolve() in inputs:
            raise EditError(f"{path}: the output would replace the input {inputs[path.resolve()]}; choose another -o")
        if path.is_dir():
            raise EditError(f"{path}: is a folder; -o names the edited photo's file")
        if path.exists() and not args.overwrite:
            raise EditError(f"{path} exists; pass --overwrite to replace it, or choose another -o")
    try:
        image_format(paths["photo"])
    except ValueError as exc:
        raise EditError(f"-o {exc}") from None
    folder = paths["photo"].parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise EditError(f"{folder}: cannot write there (permission denied)")


def _inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    named = [("photo", args.photo), ("--reference", args.reference), ("--sketch", args.sketch), ("--mask", args.mask)]
    return [(path, flag if flag.startswith("--") else path) for flag, path in named if path]


def identity_lines(faces: list) -> list[str]:
    """dlib's identity distance of each face's edit to its crop (a trained network; below 0.6 is
    dlib's "same person"), or nothing when dlib is not installed."""
    if not dlib_models.available():
        return []
    from .evaluation.dlib_identity import SAME_PERSON, DlibIdentity

    identity, lines = DlibIdentity(), []
    for i, face in enumerate(faces):
        crop, edit = pil_to_tensor(face.crop)[None], pil_to_tensor(face.edit)[None]
        distance = float(identity.distance(crop, edit))
        verdict = "the same person" if distance < SAME_PERSON else "not the same person"
        tag = "" if len(faces) == 1 else f" (face {i})"
        lines.append(f"identity{tag}: dlib distance {distance:.3f} to the input ({verdict} by dlib's {SAME_PERSON})")
    return lines


NOTHING_CHANGED = 3  # exit status: the edit ran and the photo came back unchanged


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Inputs and outputs are checked first, everything is computed, then written: an error leaves no
    file behind. `args.unchanged` says afterwards whether the written photo equals the input."""
    check_outputs(args, output_paths(args))
    cfg, shortened = command_config(args.weights, ["editing.source_cache=8", *args.set], args.fast, args.seed)
    if args.fast:
        print("--fast: " + (", ".join(shortened) or "nothing to shorten"), file=sys.stderr)
    size = int(cfg.generator.size)
    photo = open_rgb(args.photo)
    wanted = condition(args, size)
    report = StageReport()
    report("aligning")
    aligner = FaceAligner()
    prepared = prepare(aligner, size, photo, wanted, args.photo, args.all_faces, args.aligned)  # before the editor
    report.finish()
    if prepared.note:
        print(prepared.note, file=sys.stderr)
    paths = output_paths(args, len(prepared.crops))
    check_outputs(args, paths)
    report("loading editor")
    editor = build_editor(cfg)
    torch.manual_seed(args.seed)
    with observe_steps(report.step):
        result = PhotoEditor(editor, aligner, args.grow, args.feather).edit_prepared(prepared, report)
    report.finish()
    for line in identity_lines(result.faces):
        print(line)
    args.unchanged = np.array_equal(np.asarray(result.photo), np.asarray(photo.convert("RGB")))
    images = {"photo": result.photo, "region": result.region}
    for i, face in enumerate(result.faces):
        tag = "" if len(result.faces) == 1 else f"_face{i}"
        images[f"aligned{tag}"], images[f"edit{tag}"] = face.crop, face.edit
    existed = {p for p in paths.values() if p.exists()}
    written: dict[str, Path] = {}
    try:
        for name, path in paths.items():
            written[name] = save_image_atomic(images[name], path)
    except OSError as exc:
        for path in set(written.values()) - existed:  # a half-written set of outputs is removed
            path.unlink(missing_ok=True)
        raise EditError(f"{paths[name]}: could not be written ({exc.strerror or exc})") from None
    return written


SHOWN_ERRORS = (ConfigError, EditError, NoFaceError, CheckpointError, ValueError, FileNotFoundError, OSError)


def message(exc: BaseException, weights: str | None) -> str | None:
    """What to tell the user about `exc` (or the error Hydra wrapped), in the command's own terms;
    None for a bug."""
    shown = user_error(exc, SHOWN_ERRORS)
    if shown is None:
        return None
    text = shown.strerror if isinstance(shown, OSError) and shown.filename and shown.strerror else str(shown)
    if isinstance(shown, OSError) and shown.filename:
        text = f"{shown.filename}: {text}"
    if weights:
        text = text.replace("Point paths.weights_dir at", "Point --weights at")
    return text


def refuse(exc: Exception, weights: str | None) -> int:
    """Exit status 2 with the one-line message of a user's error; a bug is raised again."""
    text = message(exc, weights)
    if text is None:
        raise exc
    print(f"error: {text}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    """The command after its arguments are parsed (`hairclipv2.edit` parses them without torch)."""
    silence_known_noise()
    try:
        written = run(args)
    except Exception as exc:
        return refuse(exc, args.weights)
    for name, path in written.items():
        print(f"{name:10s} {path}")
    if getattr(args, "unchanged", False):
        print(
            "warning: no hair found in the photo or in the edit: nothing was changed (the photo was written "
            "as it was). A random-weight demo parser finds no hair; --weights gives the official one.",
            file=sys.stderr,
        )
        return NOTHING_CHANGED
    return 0
