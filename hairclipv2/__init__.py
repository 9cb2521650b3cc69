"""StyleGAN inversion (e4e) and hair editing (HairCLIPv2) on one split StyleGAN2 generator.

import hairclipv2
editor = hairclipv2.from_pretrained("pretrained_models/")  # HairCLIPv2's folder; None: the demo
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # torch and the editor load on first use: `python -m hairclipv2.edit --help` needs neither
    if name == "from_pretrained":
        from .pipeline import from_pretrained

        return from_pretrained
    raise AttributeError(f"module 'hairclipv2' has no attribute {name!r}")
