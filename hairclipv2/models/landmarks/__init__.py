"""Face landmarks: the FAN heatmap network of face_alignment (Bulat and Tzimiropoulos 2017)."""

from .fan import FAN, load_fan

__all__ = ["FAN", "load_fan"]
