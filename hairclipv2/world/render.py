"""Draw the world's faces: attributes -> an anti-aliased picture, its exact labels, hair and sketch.

Every layer is a hard mask on a grid `supersample` times finer than the output, painted back to
front; the picture is the mean of each output pixel's sub-pixels (anti-aliased edges) and the label
of a pixel the class that covers most of it. Layers, back to front: background, the hair behind
the head, neck, clothes, ears, face (with eyes, brows, nose and mouth), the hair in front (the part
above the hairline, the fringe and the locks over the ears).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import masks as M
from .prior import FaceAttributes

# The world's parser classes: HairCLIPv2's ids where it names them (background, face, ear, hair,
# cloth), the project's own for the rest.
WORLD_16 = M.LabelMap(
    "world_16",
    16,
    {"background": 0, "face": 1, "eye": 4, "ear": 6, "hair": 10, "mouth": 11, "neck": 14, "cloth": 15},
    hair=("hair",),
    ears=("ear",),
)
LAYER_CLASSES = ("background", "hair", "neck", "cloth", "ear", "face", "eye", "mouth")
STROKE_VALUE = 128  # HairCLIPv2 draws its sketch strokes with this value


@dataclass
class WorldImages:
    """image (N, 3, S, S) in [-1, 1]; labels (N, 1, S, S) int64 in WORLD_16's ids; hair (N, 1, S, S)
    the hair's coverage in [0, 1]; sketch (N, 1, S, S) uint8, STROKE_VALUE on a stroke."""

    image: torch.Tensor
    labels: torch.Tensor
    hair: torch.Tensor
    sketch: torch.Tensor


def _grid(res: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    c = (torch.arange(res, device=device, dtype=torch.float32) + 0.5) / res * 2 - 1
    return c.view(1, 1, res), c.view(1, res, 1)  # x (1, 1, W), y (1, H, 1)


def _col(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1)


class Canvas:
    """Layers painted back to front as ids into one (N, H, W) map; colours are looked up once at the end.

    A paint is a colour, (N, 3) per face or (N, 3, H, W) per pixel, and the class it draws; painting a
    mask writes the paint's id there. Cheaper than blending every layer into an RGB image.
    """

    def __init__(self, n: int, res: int, device: torch.device):
        self.ids = torch.zeros(n, res, res, dtype=torch.uint8, device=device)
        self.colours: list[torch.Tensor] = []
        self.classes: list[int] = []

    def paint_with(self, rgb: torch.Tensor, cls: int) -> int:
        self.colours.append(rgb)
        self.classes.append(cls)
        return len(self.colours) - 1

    def paint(self, mask: torch.Tensor, paint: int) -> None:
        self.ids.masked_fill_(mask, paint)

    def image(self) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1]."""
        n, device = self.ids.shape[0], self.ids.device
        flat = torch.stack([c if c.ndim == 2 else torch.zeros(n, 3, device=device) for c in self.colours], 1)
        image = flat.gather(1, self.ids.long().flatten(1)[..., None].expand(-1, -1, 3))
        image = image.view(*self.ids.shape, 3).permute(0, 3, 1, 2)
        for k, colour in enumerate(self.colours):
            if colour.ndim == 4:
                image = torch.where((self.ids == k)[:, None], colour, image)
        return image

    def coverage(self, n_classes: int, supersample: int) -> torch.Tensor:
        """(N, n_classes, H / s, W / s): the fraction of each output pixel each class covers."""
        classes = torch.tensor(self.classes, device=self.ids.device)[self.ids.long()]
        onehot = torch.zeros(self.ids.shape[0], n_classes, *self.ids.shape[1:], device=self.ids.device)
        return F.avg_pool2d(onehot.scatter_(1, classes[:, None], 1.0), supersample)


def hair_regions(a: FaceAttributes, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(behind, in front) boolean masks (N, H, W) of the hair on the grid x, y."""
    cx, cy, rx, ry = _col(a.face_cx), _col(a.face_cy), _col(a.face_rx), _col(a.face_ry)
    vol, length, curl = _col(a.hair_volume), _col(a.hair_length), _col(a.curl)
    bangs, part, amount = _col(a.bangs), _col(a.parting), _col(a.hair_amount)
    dx, dy = x - cx, y - cy
    theta = torch.atan2(dx, -dy)  # 0 at the top of the head
    amp = (0.01 + 0.022 * curl) * (amount > 0)
    freq = 10 + 14 * curl
    wave = amp * torch.sin(freq * theta)

    top = (dx / (rx + vol)) ** 2 + (dy / (ry + 1.3 * vol)) ** 2 < (1 + wave / 0.35) ** 2
    bottom = cy + ry * (-0.35 + 2.4 * length) + 1.5 * amp * torch.sin(freq * 3 * x + 1.0)
    half_width = (rx + vol) * (1 + 0.25 * (dy / ry).clamp(min=0)) + wave
    lower = (dx.abs() < half_width) & (dy >= 0)
    silhouette = (top | lower) & (y < bottom) & (amount > 0)

    reach = (amount * 4).clamp(max=1)
    plain = cy - ry * (0.98 - 0.45 * reach) + 0.3 * ry * (dx / rx) ** 2
    plain = plain - 0.1 * ry * torch.exp(-(((x - cx - 0.45 * part * rx) / 0.06) ** 2))
    fringe = cy + ry * (-0.53 + 0.2 * bangs) + 0.015 * torch.sin(40 * x) + 0.08 * part * dx
    hairline = plain * (1 - bangs) + fringe * bangs
    inner = rx * (1.05 - 0.2 * ((bottom - cy) / (0.5 * ry)).clamp(0, 1))
    locks = dx.abs() > inner
    front = silhouette & ((y < hairline) | locks)
    return silhouette, front


def from_crown(a: FaceAttributes, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle, distance) of the grid around the crown, where the strands start (above the parting)."""
    dx = x - _col(a.face_cx + 0.45 * a.parting * a.face_rx)
    dy = y - (_col(a.face_cy) - _col(a.face_ry))
    return torch.atan2(dx, dy), torch.sqrt(dx**2 + dy**2)


def hair_colour(a: FaceAttributes, angle: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W): the hair's colour with strands that fan out from the crown and curl."""
    curl = _col(a.curl)
    phi = angle * 18 + 4 * curl * torch.sin(r * (20 + 30 * curl))
    strands = 0.5 + 0.5 * torch.sin(phi)
    sheen = 0.2 * torch.exp(-(((r - 0.3) / 0.06) ** 2)) * (1 - curl)
    shade = 0.8 + 0.2 * strands + sheen
    return (a.hair_rgb[:, :, None, None] * shade[:, None]).clamp(0, 1)


def _flow_lines(a: FaceAttributes, angle: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: a few thin lines along the strands (the sketch's interior strokes)."""
    curl = _col(a.curl)
    phi = angle * 5 + 1.2 * curl * torch.sin(r * (20 + 30 * curl))
    return torch.sin(phi).abs() < 0.06


def render(a: FaceAttributes, size: int = 64, supersample: int = 4) -> WorldImages:
    """Render every face of `a` at size x size."""
    n, device = len(a), a.skin.device
    res = size * supersample
    x, y = _grid(res, device)
    cx, cy, rx, ry = _col(a.face_cx), _col(a.face_cy), _col(a.face_rx), _col(a.face_ry)
    dx, dy = x - cx, y - cy
    cls = {name: i for i, name in enumerate(LAYER_CLASSES)}

    shade = 1 + _col(a.background_gradient) * y
    canvas = Canvas(n, res, device)
    canvas.paint_with((a.background[:, :, None, None] * shade[:, None]).clamp(0, 1), cls["background"])

    behind, front = hair_regions(a, x, y)
    angle, r = from_crown(a, x, y)
    hair_paint = canvas.paint_with(hair_colour(a, angle, r), cls["hair"])
    canvas.paint(behind, hair_paint)
    neck = (dx.abs() < 0.42 * rx) & (dy > 0.2 * ry)
    canvas.paint(neck.expand(n, res, res), canvas.paint_with(a.skin * 0.85, cls["neck"]))
    cloth = ((x - cx * 0.5) / 0.8) ** 2 + ((y - 1.2) / 0.42) ** 2 < 1
    canvas.paint(cloth.expand(n, res, res), canvas.paint_with(a.cloth, cls["cloth"]))
    ears = ((dx.abs() - 0.97 * rx) / 0.065) ** 2 + ((dy + 0.02) / 0.1) ** 2 < 1
    canvas.paint(ears, canvas.paint_with(a.skin * 0.93, cls["ear"]))
    jaw = rx * (1 - 0.18 * (dy / ry).clamp(0, 1))
    face = (dx / jaw) ** 2 + (dy / ry) ** 2 < 1
    canvas.paint(face, canvas.paint_with(a.skin, cls["face"]))
    _draw_features(a, canvas, dx, dy, cls)
    canvas.paint(front, hair_paint)

    image = F.avg_pool2d(canvas.image(), supersample) * 2 - 1
    coverage = canvas.coverage(len(LAYER_CLASSES), supersample)
    ids = torch.tensor([WORLD_16.classes[c] for c in LAYER_CLASSES], device=device)
    hair = coverage[:, cls["hair"] : cls["hair"] + 1]
    on_hair = canvas.ids == hair_paint
    lines = F.max_pool2d((_flow_lines(a, angle, r) & on_hair).float()[:, None], supersample)
    return WorldImages(image, ids[coverage.argmax(1, keepdim=True)], hair, sketch_strokes(hair, lines))


def _draw_features(a: FaceAttributes, canvas: Canvas, dx: torch.Tensor, dy: torch.Tensor, cls: dict[str, int]) -> None:
    """Eyes (white, iris, pupil), brows, nose and mouth, relative to the face's centre."""
    rx, ry, size = _col(a.face_rx), _col(a.face_ry), _col(a.eye_size)
    ey = dy - _col(a.eye_y) * ry
    white_paint = canvas.paint_with(torch.full_like(a.skin, 0.95), cls["eye"])
    iris_paint = canvas.paint_with(a.iris, cls["eye"])
    pupil_paint = canvas.paint_with(torch.full_like(a.skin, 0.05), cls["eye"])
    brow_paint = canvas.paint_with(a.skin * 0.45, cls["face"])
    for side in (-1, 1):
        ex = dx - side * _col(a.eye_spacing) * rx
        white = (ex / (0.06 * size)) ** 2 + (ey / (0.032 * size)) ** 2 < 1
        canvas.paint(white, white_paint)
        iris = (ex**2 + ey**2 < (0.028 * size) ** 2) & white
        canvas.paint(iris, iris_paint)
        pupil = ex**2 + ey**2 < (0.012 * size) ** 2
        canvas.paint(pupil, pupil_paint)
        arch = ey + 0.075 + 0.025 * (1 - (ex / 0.08) ** 2)
        brow = (arch.abs() < 0.011) & (ex.abs() < 0.075)
        canvas.paint(brow, brow_paint)
    nose = (dx / 0.035) ** 2 + ((dy - 0.2 * ry) / 0.025) ** 2 < 1
    canvas.paint(nose, canvas.paint_with(a.skin * 0.82, cls["face"]))
    half = _col(a.mouth_width) * rx / 2
    t = (dx / half).clamp(-1, 1)
    centre = dy - 0.55 * ry + 0.03 * _col(a.smile) * t**2
    lips = (centre.abs() < 0.024 * torch.sqrt(1 - t**2) + 0.004) & (dx.abs() < half)
    lip_colour = a.skin * torch.tensor([0.85, 0.45, 0.45], device=a.skin.device)
    canvas.paint(lips, canvas.paint_with(lip_colour, cls["mouth"]))
    gap = lips & (centre.abs() < 0.004)
    canvas.paint(gap, canvas.paint_with(a.skin * 0.3, cls["mouth"]))


def sketch_strokes(hair: torch.Tensor, lines: torch.Tensor) -> torch.Tensor:
    """Strokes that follow the hair: its outline and lines along the strands, (N, 1, S, S) uint8."""
    inside = (hair >= 0.5).float()
    eroded = -F.max_pool2d(F.pad(-inside, (1, 1, 1, 1), value=-1.0), 3, stride=1)
    outline = (inside - eroded) > 0
    strokes = outline | ((lines > 0) & (inside > 0))
    return strokes.to(torch.uint8) * STROKE_VALUE
