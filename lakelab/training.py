"""What every training loop of both tracks shares: the divergence error, one torch thread,
and how worker processes start."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["Diverged", "torch_threads", "worker_start_method"]


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


def worker_start_method() -> str:
    """How run_lake and run_lm start their worker processes: "fork" on Linux, else "spawn".

    A forked worker starts at once, with torch imported and the set-up in memory; a spawned
    one first imports torch (speed: ``docs/benchmarks.md``). Forking a process whose OpenMP
    pool has run is safe here for the reason it is safe for PyTorch's DataLoader workers: the
    worker trains with one thread (``lakelab.training.torch_threads``), and with one thread
    ATen never enters an OpenMP parallel region. macOS and Windows spawn (fork is unsafe or
    missing there).
    """
    return "fork" if sys.platform == "linux" else "spawn"
