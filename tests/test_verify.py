"""lakelab verify: correct implementations written as a framework would (TRL's formulas,
TRL's signature) pass every check; each planted bug is caught by the check named after it,
with its likely cause; a function that raises or returns garbage gets report lines, never a
traceback."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F

from lakelab.cli import main
from lakelab.testing import assert_objective
from lakelab.verify import verify

# -- correct implementations, independent of lakelab.objectives ------------------------------


def sft(chosen):
    return -chosen.mean()


def dpo(chosen, rejected, ref_chosen, ref_rejected, beta=0.1, label_smoothing=0.0):
    logits = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    eps = label_smoothing
    return (-(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)).mean()


def ipo(chosen, rejected, ref_chosen, ref_rejected, beta=0.1):
    h = (chosen - ref_chosen) - (rejected - ref_rejected)
    return ((h - 1 / (2 * beta)) ** 2).mean()


def orpo(chosen, rejected, lam=0.1):
    def log_odds(a):  # log(p / (1 - p)) with p = exp(a), stable: log(-expm1(a))
        return a - torch.log(-torch.expm1(a.clamp(max=-1e-6)))

    return (-chosen - lam * F.logsigmoid(log_odds(chosen) - log_odds(rejected))).mean()


def asft(chosen, rejected, lam=1.0, beta=1.0):
    def log_odds(a):
        return a - torch.log(-torch.expm1(a.clamp(max=-1e-6)))

    absolute = F.logsigmoid(beta * log_odds(chosen)) + F.logsigmoid(-beta * log_odds(rejected))
    return (-chosen - lam * absolute).mean()


def simpo(chosen, rejected, beta=2.0, gamma=0.5):
    return -F.logsigmoid(beta * (chosen - rejected) - gamma)  # per-sequence losses (B,)


CORRECT = {"sft": sft, "dpo": dpo, "ipo": ipo, "orpo": orpo, "asft": asft, "simpo": simpo}


@pytest.mark.parametrize("like", list(CORRECT))
def test_correct_implementations_pass_every_check(like):
    report = assert_objective(CORRECT[like], like=like)
    names = [c.name for c in report.checks]
    assert "agrees/random" in names and "float32" in names and "batch_size" in names
    assert str(report).endswith(f"{len(names)} passed, 0 failed")


def test_hyper_parameters_reach_the_function():
    assert verify(dpo, like="dpo", hparams={"beta": 0.5, "label_smoothing": 0.2}).ok
    assert verify(simpo, like="simpo", hparams={"beta": 5.0, "gamma": 1.0}).ok


# -- planted bugs ------------------------------------------------------------------------------


def failed(report) -> dict[str, str]:
    return {c.name: c.bug for c in report.checks if not c.ok}


def test_a_loss_scaled_by_beta_is_found_and_named():  # the trl#1612 class of bug
    def scaled(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
        return beta * dpo(c, r, rc, rr, beta, label_smoothing)

    bugs = failed(verify(scaled, like="dpo", hparams={"beta": 0.5}))
    assert "scaled by beta" in bugs["agrees/random"]


def test_a_batch_sum_is_found_and_named():
    def summed(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
        return dpo(c, r, rc, rr, beta, label_smoothing) * len(c)

    bugs = failed(verify(summed, like="dpo"))
    assert bugs["batch_size"] == "the batch is summed instead of averaged"
    assert "summed instead of averaged" in bugs["agrees/random"]


def test_an_unstable_formula_fails_in_float32():
    def unstable(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
        d = beta * ((c - rc) - (r - rr))
        eps = label_smoothing
        return (
            -(1 - eps) * torch.log(torch.sigmoid(d)) - eps * torch.log(torch.sigmoid(-d))
        ).mean()

    bugs = failed(verify(unstable, like="dpo"))
    assert list(bugs) == ["float32"] and "logsigmoid" in bugs["float32"]


def test_an_ignored_hyper_parameter_is_named():
    def no_smoothing(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
        return dpo(c, r, rc, rr, beta, 0.0)

    bugs = failed(verify(no_smoothing, like="dpo"))
    assert list(bugs) == ["hparam/label_smoothing"]
    assert "label_smoothing is ignored" in bugs["hparam/label_smoothing"]


def test_misaligned_pairs_are_caught():
    def shifted(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
        return dpo(c, r.roll(1), rc, rr.roll(1), beta, label_smoothing).mean() + 0 * c.sum()

    report = verify(shifted, like="dpo")
    assert not report.ok and "agrees/random" in failed(report)


def test_a_wrong_gradient_with_the_right_value_is_caught():
    def detached(c, r, rc, rr, beta=0.1, label_smoothing=0.0):  # r's gradient is lost
        return dpo(c, r.detach() + 0 * r, rc, rr, beta, label_smoothing)

    bugs = failed(verify(detached, like="dpo"))
    assert "gradient does not" in bugs["agrees/random"]


@pytest.mark.parametrize(
    ("fn", "said"),
    [
        (lambda c: (_ for _ in ()).throw(RuntimeError("boom")), "raised RuntimeError: boom"),
        (lambda c: float(-c.mean().detach()), "returned float, not a tensor"),
        (lambda c: torch.stack([c, c], 1), "returned shape"),
        (lambda c: torch.tensor(1.0, dtype=c.dtype), "does not depend on the inputs"),
        (lambda c, extra: -c.mean(), "raised TypeError"),
    ],
)
def test_garbage_gets_report_lines_never_a_traceback(fn, said):
    report = verify(fn, like="sft")
    assert not report.ok
    assert all(said in c.measured for c in report.checks if not c.ok)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="per-token log-probs: use inputs='tokens'"):
        verify(sft, like="ift")
    with pytest.raises(ValueError, match=r"inputs must be one of \['sequences', 'tokens'\]"):
        verify(sft, like="sft", inputs="logits")
    with pytest.raises(ValueError, match="unknown objective 'dop'"):
        verify(dpo, like="dop")
    with pytest.raises(AssertionError, match="does not implement 'dpo'"):
        assert_objective(lambda c, r, rc, rr: -(c - r).mean(), like="dpo")


def test_the_command_exits_1_on_a_failing_check_and_writes_json(tmp_path, monkeypatch, capsys):
    module = tmp_path / "my_losses.py"
    module.write_text(
        "import torch.nn.functional as F\n"
        "def good(c, r, rc, rr, beta=0.1, label_smoothing=0.0):\n"
        "    d = beta * ((c - rc) - (r - rr))\n"
        "    eps = label_smoothing\n"
        "    return (-(1 - eps) * F.logsigmoid(d) - eps * F.logsigmoid(-d)).mean()\n"
        "def bad(c, r, rc, rr, beta=0.1, label_smoothing=0.0):\n"
        "    return beta * good(c, r, rc, rr, beta, label_smoothing)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["verify", "my_losses:good", "--like", "dpo", "--hparam", "beta=0.3"]) == 0
    assert "0 failed" in capsys.readouterr().out
    out = tmp_path / "report.json"
    assert main(["verify", "my_losses:bad", "--like", "dpo", "--json", str(out)]) == 1
    assert "likely bug: the loss is scaled by beta" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["ok"] is False and saved["hparams"]["beta"] == 0.1
    assert main(["verify", "my_losses:missing", "--like", "dpo"]) == 2
    assert "cannot load 'my_losses:missing'" in capsys.readouterr().err
    assert main(["verify", "my_losses", "--like", "dpo"]) == 2
    assert main(["verify", "my_losses:good", "--like", "dpo", "--inputs", "logits"]) == 2
    assert main(["verify", "my_losses:good", "--like", "dpo", "--hparam", "beta"]) == 2


# -- the per-token form: where masking and length-normalisation bugs live ---------------------


def summed(x, mask):
    return torch.where(mask, x, 0.0).sum(-1)


def mean(x, mask):
    return summed(x, mask) / mask.sum(-1)


def margin(logps, reduce, rejected_mask=None):
    """(R(y_w) - R_ref(y_w)) - (R(y_l) - R_ref(y_l)) with R the given reduction."""
    mc, mr = logps.chosen_mask, logps.rejected_mask if rejected_mask is None else rejected_mask
    chosen = reduce(logps.chosen, mc) - reduce(logps.ref_chosen, mc)
    return chosen - (reduce(logps.rejected, mr) - reduce(logps.ref_rejected, mr))


def dpo_tokens(logps, beta=0.1, label_smoothing=0.0):
    d = beta * margin(logps, summed)
    return (-(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)).mean()


def ipo_tokens(logps, beta=0.1):
    return ((margin(logps, mean) - 1 / (2 * beta)) ** 2).mean()


def sft_tokens(logps):
    return -mean(logps.chosen, logps.chosen_mask).mean()


def test_correct_per_token_implementations_pass_every_check():
    for fn, like in ((dpo_tokens, "dpo"), (ipo_tokens, "ipo"), (sft_tokens, "sft")):
        report = assert_objective(fn, like=like, inputs="tokens")
        assert "masked_contents" in [c.name for c in report.checks]


def test_ift_is_checked_in_the_per_token_form():
    from lakelab.objectives import ift_loss

    def ift(logps, gamma=0.95, weighting="loss"):
        return ift_loss(logps.chosen, logps.chosen_mask, gamma=gamma, weighting=weighting)[0]

    assert verify(ift, like="ift", inputs="tokens", hparams={"gamma": 0.5}).ok
    bugs = failed(verify(lambda logps, gamma=0.95: ift(logps), like="ift", inputs="tokens"))
    assert "hparam/gamma" in bugs  # gamma accepted but ignored


def test_ipo_on_summed_log_probs_is_named():  # trl#1022
    def ipo_on_sums(logps, beta=0.1):
        return ((margin(logps, summed) - 1 / (2 * beta)) ** 2).mean()

    bugs = failed(verify(ipo_on_sums, like="ipo", inputs="tokens"))
    assert bugs["agrees/random"] == "uses summed log-probs where ipo uses mean ones"


def test_dpo_on_mean_log_probs_is_named():
    def dpo_on_means(logps, beta=0.1, label_smoothing=0.0):
        return (-F.logsigmoid(beta * margin(logps, mean))).mean()

    bugs = failed(verify(dpo_on_means, like="dpo", inputs="tokens"))
    assert bugs["agrees/random"] == "uses mean log-probs where dpo uses summed ones"


def test_a_token_level_batch_mean_is_named():
    def token_mean(logps):
        m = logps.chosen_mask
        return -(logps.chosen * m).sum() / m.sum()

    bugs = failed(verify(token_mean, like="sft", inputs="tokens"))
    assert "token-level mean over the batch" in bugs["agrees/random"]


def test_an_unmasked_rejected_prompt_leaks_and_is_caught():  # OpenRLHF#294
    def prompt_leak(logps, beta=0.1, label_smoothing=0.0):
        mr = logps.rejected_mask
        with_prompt = torch.cumsum(mr.flip(-1).int(), -1).flip(-1) > 0  # prompt and response
        return (-F.logsigmoid(beta * margin(logps, summed, with_prompt))).mean()

    bugs = failed(verify(prompt_leak, like="dpo", inputs="tokens"))
    assert "prompt or padding positions leak" in bugs["masked_contents"]
