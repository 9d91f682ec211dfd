"""Fixtures shared by several test modules (pytest finds them here; nothing imports this file).

Plain helper functions and constants live in tests/helpers.py, the independent reference
implementations in tests/oracles.py. Nothing heavy is imported at the top: pytest-xdist's
controller process loads this file too, before it starts the workers.
"""

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a whole module, as ``lakelab lm`` runs: the tiny models are
    faster so on the shared 2-core machine. Request it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from lakelab.training import torch_threads  # imports torch

    with torch_threads(1):
        yield
