"""No third-party portrait is committed: every image or tensor file under tests/ and docs/ is listed in
tests/data/PROVENANCE.json with its hash and an allowed source (skimage.data, synthetic, project)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROVENANCE = ROOT / "tests" / "data" / "PROVENANCE.json"
FACES = ROOT.parent / "shared" / "faces"
BINARY = {
    ".pt",
    ".pth",
    ".npz",
    ".npy",
    ".pkl",
    ".safetensors",
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".ipynb",
    ".bin",
}
ALLOWED_SOURCES = ("skimage.data", "synthetic", "project")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def binary_files() -> list[Path]:
    found = []
    for folder in ("tests", "docs"):
        for p in (ROOT / folder).rglob("*"):
            if p.is_file() and p.suffix.lower() in BINARY and "__pycache__" not in p.parts:
                found.append(p)
    return sorted(found)


def test_every_image_or_tensor_fixture_has_an_allowed_provenance():
    listed = json.loads(PROVENANCE.read_text())["files"]
    for path in binary_files():
        rel = path.relative_to(ROOT).as_posix()
        assert rel in listed, (
            f"{rel}: an image/tensor file without an entry in {PROVENANCE.name} (say where it comes from)"
        )
        entry = listed[rel]
        assert entry["source"].startswith(ALLOWED_SOURCES), (
            f"{rel}: source {entry['source']!r} is not one of {ALLOWED_SOURCES}"
        )
        assert sha256(path) == entry["sha256"], (
            f"{rel}: changed since its provenance was recorded; update {PROVENANCE.name}"
        )
    missing = [k for k in listed if not (ROOT / k).is_file()]
    assert not missing, f"{PROVENANCE.name} lists files that are not there: {missing}"


@pytest.mark.skipif(not FACES.is_dir(), reason="../shared/faces (real aligned portraits) is not present")
def test_no_shared_portrait_is_committed():
    faces = {sha256(p) for p in FACES.iterdir() if p.suffix.lower() in (".jpg", ".png")}
    assert faces, "../shared/faces holds no portraits"
    assert not faces & {sha256(p) for p in binary_files()}


def test_the_world_weights_say_how_they_were_made():
    """weights/world/: every file listed in its PROVENANCE.json with its hash, the command that
    trained it, the seed, the steps and the run's measured validation."""
    folder = ROOT / "weights" / "world"
    provenance = json.loads((folder / "PROVENANCE.json").read_text())
    listed = {f: h for entry in provenance.values() for f, h in entry["files"].items()}
    present = {p.relative_to(ROOT).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "PROVENANCE.json"}
    assert present == set(listed)
    for rel, digest in listed.items():
        assert sha256(ROOT / rel) == digest, f"{rel}: changed since its provenance was recorded"
    for name, entry in provenance.items():
        assert entry["command"].startswith("python train.py experiment=world_"), name
        assert isinstance(entry["seed"], int) and entry["steps"] > 0 and entry["validation"], name
