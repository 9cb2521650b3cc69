"""Which implementation the StyleGAN2 ops use: the plain reference form or the fast path.

Every op in this package has a reference form that reads like the maths (used to check the fast
path and in the benchmark) and a fast path (the default). Both take and return the same shapes and
agree to float32 rounding. Switch globally, as `torch.backends` flags do:

    with ops.implementation("ref"):
        img = G.resume(w, 4, feature)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

Impl = Literal["ref", "fast"]
_IMPLS = ("ref", "fast")
_current: list[Impl] = ["fast"]


def current() -> Impl:
    """The implementation the ops use now ("fast" unless inside `implementation("ref")`)."""
    return _current[-1]


@contextlib.contextmanager
def implementation(name: Impl) -> Iterator[None]:
    """Run the enclosed ops with implementation `name` ("ref" or "fast")."""
    if name not in _IMPLS:
        raise ValueError(f"ops implementation must be one of {_IMPLS}, got {name!r}")
    _current.append(name)
    try:
        yield
    finally:
        _current.pop()
