"""The temporal residual (IFT eq. 17): hand examples, edge values of lam, gradient flow."""

from __future__ import annotations

import pytest
import torch

from lakelab.residual import predicted_inputs, temporal_residual
from tests.helpers import assert_close


def batch(seed: int = 0, B: int = 2, T: int = 5, d: int = 3):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(B, T, d, generator=g, dtype=torch.float64)
    predicted = torch.randn(B, T, d, generator=g, dtype=torch.float64)
    prompt = torch.zeros(B, T, dtype=torch.bool)
    prompt[0, :2] = True  # row 0: 2 prompt positions; row 1: none
    return inputs, predicted, prompt


def test_hand_example():
    inputs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]]])  # (1, 4, 2)
    predicted = torch.tensor([[[10.0, 0.0], [0.0, 10.0], [20.0, 0.0], [99.0, 99.0]]])
    prompt = torch.tensor([[True, True, False, False]])
    mixed = temporal_residual(inputs, predicted, prompt, lam=0.25)
    expected = torch.tensor(
        [
            [
                [1.0, 0.0],  # prompt: unchanged
                [0.0, 1.0],  # prompt: unchanged
                [0.75 * 2 + 0.25 * 0, 0.75 * 2 + 0.25 * 10],  # mixed with predicted[:, 1]
                [0.75 * 4 + 0.25 * 20, 0.75 * 0 + 0.25 * 0],  # mixed with predicted[:, 2]
            ]
        ]
    )
    assert_close(mixed, expected)


def test_lam_zero_returns_inputs_exactly():
    inputs, predicted, prompt = batch()
    assert torch.equal(temporal_residual(inputs, predicted, prompt, lam=0.0), inputs)


def test_lam_one_gives_shifted_prediction_at_response_positions():
    inputs, predicted, prompt = batch()
    mixed = temporal_residual(inputs, predicted, prompt, lam=1.0)
    assert torch.equal(mixed[0, 2:], predicted[0, 1:-1])
    assert torch.equal(mixed[1, 1:], predicted[1, :-1])


def test_prompt_positions_and_position_zero_untouched():
    inputs, predicted, prompt = batch()
    mixed = temporal_residual(inputs, predicted, prompt, lam=0.6)
    assert torch.equal(mixed[0, :2], inputs[0, :2])
    assert torch.equal(mixed[1, 0], inputs[1, 0])  # no prompt in row 1, still no prediction at 0
    assert not torch.equal(mixed[1, 1], inputs[1, 1])


def test_gradient_reaches_inputs_but_never_predicted():
    inputs, predicted, prompt = batch()
    inputs.requires_grad_(True)
    predicted.requires_grad_(True)
    mixed = temporal_residual(inputs, predicted, prompt, lam=0.3)
    assert mixed.requires_grad
    mixed.sum().backward()
    assert predicted.grad is None
    expected = torch.full_like(inputs, 0.7)
    expected[0, :2] = 1.0  # prompt positions pass through
    expected[1, 0] = 1.0  # position 0 passes through
    assert_close(inputs.grad, expected)


def test_accepts_float_prompt_mask():
    inputs, predicted, prompt = batch()
    a = temporal_residual(inputs, predicted, prompt, lam=0.2)
    b = temporal_residual(inputs, predicted, prompt.double(), lam=0.2)
    assert torch.equal(a, b)


def test_predicted_inputs_greedy_vs_expected_by_hand():
    embedding = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])  # V = 3, d = 2
    probs = torch.tensor([[[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]]])  # (1, 2, 3)
    greedy = predicted_inputs(probs, embedding, variant="greedy")
    expected = predicted_inputs(probs, embedding, variant="expected")
    assert_close(greedy, torch.tensor([[[0.0, 2.0], [1.0, 0.0]]]))
    # row 0: 0.1*[1,0] + 0.7*[0,2] + 0.2*[3,3] = [0.7, 2.0];  row 1: [0.5+1.2, 0.2+1.2]
    assert_close(expected, torch.tensor([[[0.7, 2.0], [1.7, 1.4]]]))
    assert torch.equal(predicted_inputs(probs, embedding), greedy)  # default is greedy


def test_predicted_inputs_one_hot_identity_and_detached():
    probs = torch.softmax(torch.randn(2, 4, 5), dim=-1)
    eye = torch.eye(5, requires_grad=True)
    expected = predicted_inputs(probs, eye, variant="expected")
    assert_close(expected, probs)
    greedy = predicted_inputs(probs, eye)
    assert torch.equal(greedy, torch.nn.functional.one_hot(probs.argmax(-1), 5).float())
    assert not expected.requires_grad and not greedy.requires_grad


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, p, m: temporal_residual(x, p, m, lam=1.5), r"lam must be in \[0, 1\], got 1.5"),
        (lambda x, p, m: temporal_residual(x, p, m, lam=-0.1), r"lam must be in \[0, 1\]"),
        (lambda x, p, m: temporal_residual(x, p[:, :-1], m),
         r"predicted and inputs must have the same shape .*\(2, 4, 3\) and \(2, 5, 3\)"),
        (lambda x, p, m: temporal_residual(x, p, m[:, :-1]),
         r"prompt_mask must have shape \(B, T\) = \(2, 5\), got \(2, 4\)"),
        (lambda x, p, m: temporal_residual(x, p, m.double() * 2), "only 0 and 1"),
        (lambda x, p, m: temporal_residual(x[0], p[0], m), r"inputs must be .*\(B, T, d\)"),
        (lambda x, p, m: predicted_inputs(p, torch.eye(3), variant="sample"),
         r"variant must be one of \['expected', 'greedy'\], got 'sample'"),
        (lambda x, p, m: predicted_inputs(torch.rand(2, 4), torch.eye(3)),
         r"disagree on V: \(2, 4\) and \(3, 3\)"),
    ],
)  # fmt: skip
def test_value_errors(call, message):
    inputs, predicted, prompt = batch()
    with pytest.raises(ValueError, match=message):
        call(inputs, predicted, prompt)
