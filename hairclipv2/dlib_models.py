"""dlib's trained networks, as shipped by the registry package `face_recognition_models==0.3.0`.

The package's own `__init__` needs `pkg_resources` (gone from recent setuptools), so the files are
found from the package's folder without importing it. dlib itself installs as the binary wheel
`dlib-bin` (scripts/setup.sh, environment.yml).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = "pip install dlib-bin face_recognition_models==0.3.0 (scripts/setup.sh installs both)"


class DlibUnavailable(ImportError):
    """dlib or its model files are not installed."""


def dlib_module() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise DlibUnavailable(f"dlib is not installed: {INSTALL_HINT}") from exc
    return dlib


def model_file(name: str) -> Path:
    """The path of one of face_recognition_models' files, e.g. PREDICTOR_68."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DlibUnavailable(f"{name}: the package face_recognition_models is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise DlibUnavailable(f"{name}: not found at {path}; reinstall face_recognition_models==0.3.0")
    return path


def available() -> bool:
    """dlib and the 68-point predictor are installed."""
    try:
        dlib_module()
        model_file(PREDICTOR_68)
    except DlibUnavailable:
        return False
    return True


@cache
def frontal_face_detector() -> Any:
    """dlib's HOG detector (the one FFHQ, e4e and HairCLIPv2 align with)."""
    return dlib_module().get_frontal_face_detector()


@cache
def shape_predictor(name: str = PREDICTOR_68) -> Any:
    return dlib_module().shape_predictor(str(model_file(name)))


@cache
def face_recognition_model() -> Any:
    return dlib_module().face_recognition_model_v1(str(model_file(FACE_RECOGNITION)))
