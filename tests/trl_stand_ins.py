"""What TRL's trainer methods read of a trainer's accelerator, for the harnesses that call
them unchanged (tests/trl_code.py, trl_kto.py, trl_cpo_nll.py). Imports no TRL."""

import contextlib

import torch


class Accelerator:
    """The one process of a CPU run: gathers are the identity, autocast does nothing."""

    device = torch.device("cpu")
    parallelism_config = None
    num_processes = 1

    @staticmethod
    def gather(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    gather_for_metrics = gather

    @staticmethod
    def autocast():
        return contextlib.nullcontext()
