"""Shared test helpers."""

import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol=None, atol=None) -> None:
    """Like torch.testing.assert_close (same default tolerances), without its ~1 s first-call
    import cost."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual, expected)
    single = actual.dtype == torch.float32
    rtol = (1.3e-6 if single else 1e-7) if rtol is None else rtol
    atol = (1e-5 if single else 1e-7) if atol is None else atol
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual, expected)
