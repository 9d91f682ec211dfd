"""What every training loop of both tracks shares: the divergence error and one torch thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["Diverged", "torch_threads"]


class Diverged(FloatingPointError):
    """A run produced NaN or inf; the message names method, seed and step."""


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous setting.

    Both tracks train with one (speed: ``docs/benchmarks.md``); one thread also makes the
    numbers independent of the machine's core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
