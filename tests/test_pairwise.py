"""The other loss types of TRL's DPO trainer (lakelab.pairwise): values derived by hand at
symmetric points, gradients by gradcheck in float64, the direction each pushes the two
likelihoods, stability where TRL's own code is not, and bad hyper-parameters refused by name.
Their agreement with TRL's code is tests/test_verify_trl.py's; with the plain-Python oracles,
tests/test_golden.py's."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from lakelab import pairwise
from lakelab.registry import OBJECTIVES, compute_objective, resolve_hparams

FUNCTIONS = {
    "exo": pairwise.exo_loss,
    "nca": pairwise.nca_loss,
    "bco_pair": pairwise.bco_pair_loss,
    "sppo_hard": pairwise.sppo_hard_loss,
    "apo": pairwise.apo_loss,
    "discopop": pairwise.discopop_loss,
    "dpo_norm": pairwise.dpo_norm_loss,
}


def pair(w: float, l: float) -> list[torch.Tensor]:
    """Inputs with log-ratios w (chosen) and l (rejected): policy - reference."""
    ref_c, ref_r = torch.tensor([-3.0]).double(), torch.tensor([-2.0]).double()
    return [ref_c + w, ref_r + l, ref_c, ref_r]


def loss(name: str, w: float, l: float, **hp) -> float:
    return FUNCTIONS[name](*pair(w, l), **hp)[0].item()


def test_every_function_is_registered_with_its_trl_spelling():
    for name, fn in FUNCTIONS.items():
        assert OBJECTIVES[name].loss_fn is fn
        assert OBJECTIVES[name].trl, name  # each reproduces a TRL loss type


def test_values_at_pi_ref_and_symmetric_points():
    eps = 0.2
    assert loss("exo", 0, 0, label_smoothing=eps) == pytest.approx(
        0.5 * (math.log(0.5 / (1 - eps)) + math.log(0.5 / eps))
    )
    assert loss("nca", 0, 0) == pytest.approx(2 * math.log(2))
    assert loss("bco_pair", 0, 0) == pytest.approx(2 * math.log(2))
    # BCO's two terms are mirror images: at delta = 0 swapping w <-> -l changes nothing
    assert loss("bco_pair", 1.3, -0.4) == pytest.approx(loss("bco_pair", 0.4, -1.3))
    assert loss("bco_pair", 1.3, -0.4, delta=0.2) != pytest.approx(
        loss("bco_pair", 0.4, -1.3, delta=0.2)
    )
    assert loss("sppo_hard", 0, 0, beta=0.25) == pytest.approx(1 / (2 * 0.25**2))
    assert loss("sppo_hard", 2.0, -2.0, beta=0.25) == pytest.approx(0.0)  # both on target
    assert loss("apo", 0, 0, variant="zero") == pytest.approx(1.0)
    assert loss("apo", 0, 0, variant="down") == pytest.approx(1.0)
    assert loss("discopop", 0, 0) == pytest.approx((1 + math.log(2)) / 2)
    assert loss("dpo_norm", 0, 0) == pytest.approx(math.log(2))
    # NCA: the derivative in the chosen log-ratio at 0 is -beta/2 + beta/4 = -beta/4
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    pairwise.nca_loss(w, zero, zero, zero, beta=0.4)[0].backward()
    assert w.grad.item() == pytest.approx(-0.1)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gradcheck(name):
    g = torch.Generator().manual_seed(3)
    args = tuple(
        (-5 * torch.rand(6, generator=g, dtype=torch.float64)).requires_grad_() for _ in range(4)
    )
    hp = resolve_hparams(name, {"beta": 0.7})
    assert gradcheck(lambda *x: FUNCTIONS[name](*x, **hp)[0], args, eps=1e-6, atol=1e-7)


def test_which_likelihoods_each_pushes():
    """d loss / d S at pi = pi_ref: negative raises that log-prob under gradient descent."""

    def slopes(name, **hp):
        x = [t.requires_grad_() for t in pair(0.0, 0.0)]
        FUNCTIONS[name](*x, **hp)[0].backward()
        return x[0].grad.item(), x[1].grad.item()

    up, down = slopes("apo", variant="zero")
    assert up < 0 < down  # chosen up, rejected down
    chosen, rejected = slopes("apo", variant="down")
    assert chosen == pytest.approx(0.0) and rejected > 0  # at pi_ref only the rejected falls
    x = [t.requires_grad_() for t in pair(0.5, -0.5)]
    pairwise.apo_loss(*x, variant="down")[0].backward()
    assert x[0].grad.item() > 0 and x[1].grad.item() > 0  # off it both fall
    chosen, rejected = slopes("nca")
    assert chosen < 0 < rejected  # NCA raises the chosen on its own


def test_discopop_is_finite_where_exp_overflows():
    far = torch.tensor([-8000.0, 8000.0], dtype=torch.float64)  # rho = -800 and 800
    zero = torch.zeros(2, dtype=torch.float64)
    losses = pairwise.discopop_loss(zero, -far, zero, zero, reduction="none")[0]
    assert torch.isfinite(losses).all()
    assert losses[0].item() == pytest.approx(800.0, rel=1e-9)  # -logsigmoid(rho) ~ -rho
    half = pairwise.discopop_loss(
        zero.float(), -far.float(), zero.float(), zero.float(), reduction="none"
    )[0]
    assert torch.isfinite(half).all()  # float32 too (exp(-rho) alone overflows at -88)


@pytest.mark.parametrize(
    ("name", "hp", "message"),
    [
        ("exo", {"label_smoothing": 0.0}, r"label_smoothing must be in \(0, 0.5\), got 0.0"),
        ("exo", {"label_smoothing": 0.5}, r"label_smoothing must be in \(0, 0.5\)"),
        ("nca", {"beta": 0.0}, r"beta must be in \(0, inf\), got 0.0"),
        ("apo", {"variant": "up"}, r"variant must be one of \['down', 'zero'\], got 'up'"),
        ("discopop", {"discopop_tau": -1.0}, r"discopop_tau must be in \(0, inf\)"),
        ("bco_pair", {"delta": math.inf}, "delta"),
    ],
)
def test_bad_hyper_parameters_are_refused_by_name(name, hp, message):
    with pytest.raises(ValueError, match=message):
        FUNCTIONS[name](*pair(0.1, -0.1), **hp)
    with pytest.raises(ValueError, match=message):
        resolve_hparams(name, hp)


def test_dpo_norm_is_dpo_on_mean_log_probs():
    from tests.helpers import token_batch

    logps = token_batch()
    mean = compute_objective("dpo_norm", logps, {"beta": 0.3})[0]
    masks = [logps.chosen_mask.bool(), logps.rejected_mask.bool()]

    def a(x, m):
        return torch.where(m, x, 0.0).sum(-1) / m.sum(-1)

    w = a(logps.chosen, masks[0]) - a(logps.ref_chosen, masks[0])
    l = a(logps.rejected, masks[1]) - a(logps.ref_rejected, masks[1])
    expected = -torch.nn.functional.logsigmoid(0.3 * (w - l)).mean()
    assert mean.item() == pytest.approx(expected.item(), rel=1e-12)


def test_discopop_at_pi_ref_slopes_towards_a_negative_margin():
    """d L / d rho at rho = 0 is (1 - log 2) / (4 tau) - 3/4: positive for tau = 0.05, so
    descent from pi = pi_ref lowers the margin, into a local minimum near rho = -0.12 (the
    lake run of docs/trl.md)."""
    tau, beta = 0.05, 1.0

    def slope(rho: float) -> float:
        w = torch.tensor([rho], dtype=torch.float64, requires_grad=True)
        zero = torch.zeros(1, dtype=torch.float64)
        pairwise.discopop_loss(w, zero, zero, zero, beta=beta, discopop_tau=tau)[0].backward()
        return w.grad.item()

    assert slope(0.0) == pytest.approx((1 - math.log(2)) / (4 * tau) - 0.75, rel=1e-9)
    assert slope(0.0) > 0 and slope(-0.2) < 0 < slope(-0.05)  # a minimum in (-0.2, -0.05)
    assert slope(0.2) < 0  # beyond the maximum near +0.07 the margin grows again


def test_f_dpo_scores_by_hand():
    """f-DPO: d = beta (g(r_w) - g(r_l)) with g = f'(pi / pi_ref) of each divergence."""
    from lakelab.objectives import dpo_loss

    w, l, beta = 0.7, -0.4, 0.5

    def f_dpo(kind: str, a: float = 1.0) -> float:
        return dpo_loss(*pair(w, l), beta=beta, f_divergence_type=kind,
                        f_alpha_divergence_coef=a)[0].item()  # fmt: skip

    def expected(g) -> float:
        return math.log1p(math.exp(-beta * (g(w) - g(l))))  # -logsigmoid(d)

    assert f_dpo("forward_kl") == pytest.approx(expected(lambda r: 1 - math.exp(-r)))
    assert f_dpo("js_divergence") == pytest.approx(
        expected(lambda r: math.log(2) - math.log1p(math.exp(-r)))
    )
    assert f_dpo("alpha_divergence", 0.5) == pytest.approx(
        expected(lambda r: (math.exp(-0.5 * r) - 1) / -0.5)
    )
    assert f_dpo("alpha_divergence", 1 + 1e-7) == pytest.approx(f_dpo("reverse_kl"), rel=1e-6)
    assert f_dpo("alpha_divergence", 1.0) == f_dpo("reverse_kl")
    for kind in ("forward_kl", "js_divergence", "alpha_divergence"):  # log 2 at pi = pi_ref
        assert dpo_loss(*pair(0.0, 0.0), f_divergence_type=kind, f_alpha_divergence_coef=0.5)[
            0
        ].item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match=r"f_divergence_type must be one of \['alpha_divergence'"):
        dpo_loss(*pair(w, l), f_divergence_type="kl")


def test_ld_dpo_weighs_the_longer_tail_by_alpha():
    from lakelab.objectives import dpo_loss

    x = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-0.5, -0.5, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[-4.0, 0.0, 0.0, 0.0], [-1.0, -1.0, -1.0, -2.0]], dtype=torch.float64)
    mx = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool()
    my = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]]).bool()
    zero = torch.zeros_like(x)
    loss = pairwise.ld_dpo_loss(x, mx, y, my, zero, zero, beta=1.0, ld_alpha=0.25,
                                reduction="none")[0]  # fmt: skip
    # row 0: n = 1: chosen -1 + 0.25 (-5) = -2.25, rejected -4; row 1: n = 2: -1 vs -2 + 0.25 (-3)
    expected = [math.log1p(math.exp(-(-2.25 + 4.0))), math.log1p(math.exp(-(-1.0 + 2.75)))]
    assert loss.tolist() == pytest.approx(expected)
    full = pairwise.ld_dpo_loss(x, mx, y, my, zero, zero, ld_alpha=1.0)[0]
    sums = [torch.where(m, v, 0.0).sum(-1) for v, m in ((x, mx), (y, my))]
    assert full.item() == pytest.approx(dpo_loss(*sums, sums[0] * 0, sums[1] * 0)[0].item())
    with pytest.raises(ValueError, match=r"ld_alpha must be in \[0, 1\], got 1.5"):
        pairwise.ld_dpo_loss(x, mx, y, my, zero, zero, ld_alpha=1.5)


@pytest.mark.parametrize("name", ["exo", "discopop"])
@pytest.mark.parametrize("divergence", ["forward_kl", "js_divergence", "alpha_divergence"])
def test_f_divergences_replace_the_log_ratios_by_their_scores(name, divergence):
    """With f_divergence_type, EXO and DiscoPOP see f-DPO's scores g(r) where they saw the
    log-ratios r: the loss equals the reverse-KL one on inputs whose log-ratios are g(r)."""
    from lakelab.objectives import _f_score

    g = torch.Generator().manual_seed(8)
    c, r, rc, rr = (-4 * torch.rand(5, generator=g, dtype=torch.float64) for _ in range(4))
    fn = OBJECTIVES[name].loss_fn
    got = fn(c, r, rc, rr, f_divergence_type=divergence, f_alpha_divergence_coef=0.3)[0]
    score = lambda x: _f_score(x, divergence, 0.3)  # noqa: E731
    zero = torch.zeros(5, dtype=torch.float64)
    want = fn(score(c - rc), score(r - rr), zero, zero)[0]
    assert got.item() == pytest.approx(want.item(), rel=1e-13)
    assert got.item() != pytest.approx(fn(c, r, rc, rr)[0].item())


def test_wpo_weighs_each_pair_by_both_responses_weights_held_constant():
    """WPO = w(y_w) w(y_l) DPO per pair, w = exp(mean_t (logp_t - log sum p^2)) by hand, and
    its gradient is the weighted DPO gradient: the weights are constants."""
    g = torch.Generator().manual_seed(9)
    c, r, rc, rr = (-3 * torch.rand(3, 4, generator=g, dtype=torch.float64) for _ in range(4))
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]], dtype=torch.bool)
    sq_c, sq_r = 2 * c * 0.5, 2 * r * 0.3  # between 2 logp and 0
    c.requires_grad_(True)
    loss = pairwise.wpo_loss(c, mask, r, mask, rc, rr, sq_c, sq_r, beta=0.4)[0]

    def weight(x, sq, b):  # exp of the mean over row b's tokens of logp - log sum p^2
        gaps = [(x[b, t] - sq[b, t]).item() for t in range(4) if mask[b, t]]
        return math.exp(sum(gaps) / len(gaps))

    w = [weight(c, sq_c, b) * weight(r, sq_r, b) for b in range(3)]
    S = lambda x: torch.where(mask, x, 0.0).sum(-1)  # noqa: E731
    dpo = OBJECTIVES["dpo"].loss_fn(S(c), S(r), S(rc), S(rr), beta=0.4, reduction="none")[0]
    want = (torch.tensor(w, dtype=torch.float64) * dpo).mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-13)
    (got,) = torch.autograd.grad(loss, c)
    (ref,) = torch.autograd.grad(want, c)
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-15)
