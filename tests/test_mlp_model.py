"""The Frozen Lake MLP: the policy table against the network run on one-hot inputs."""

import pytest
import torch

from lakelab.mlp import model


@pytest.mark.parametrize("activation", sorted(model.ACTIVATIONS))
def test_policy_table_is_the_network_on_one_hot_states_bit_for_bit(activation):
    params = model.clone(model.init_params([3, 4, 5], 7, 4, 6), requires_grad=True)
    with torch.no_grad():  # move off the init so that no entry is special
        for v in params.values():
            v.add_(torch.linspace(-0.3, 0.4, v.numel(), dtype=v.dtype).view_as(v))
    eye = torch.eye(7, dtype=torch.float64).expand(3, 7, 7)
    expected = torch.log_softmax(model.forward(params, eye, activation), -1)
    table = model.state_log_probs(params, activation)
    assert torch.equal(table, expected)
    weights = torch.arange(table.numel(), dtype=torch.float64).view_as(table).cos()
    grads = torch.autograd.grad((table * weights).sum(), list(params.values()))
    expected_grads = torch.autograd.grad((expected * weights).sum(), list(params.values()))
    for name, g, e in zip(params, grads, expected_grads, strict=True):
        assert torch.equal(g, e), name


def test_flat_params_views_and_gradients_equal_separate_tensors():
    params = model.clone(model.init_params([1, 2], 5, 4, 3), requires_grad=True)
    theta = model.FlatParams(params)
    views = theta.views()
    assert list(views) == list(params)
    for k in params:
        assert torch.equal(views[k], params[k]) and views[k].is_contiguous(), k
    weights = torch.linspace(-1, 1, 2 * 5 * 4, dtype=torch.float64).view(2, 5, 4)
    (model.state_log_probs(views) * weights).sum().backward()
    (model.state_log_probs(params) * weights).sum().backward()
    expected = torch.cat([params[k].grad.reshape(-1) for k in params])
    assert torch.equal(theta.flat.grad, expected)
    with torch.no_grad():  # an update of the leaf shows in the next views
        theta.flat.add_(1.0)
    assert torch.equal(theta.views()["b2"], params["b2"].detach() + 1.0)
