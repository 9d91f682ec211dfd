"""lakelab verify: correct implementations written as a framework would (TRL's formulas,
TRL's signature) pass every check; each planted bug is caught by the check named after it,
with its likely cause; a function that raises or returns garbage gets report lines, never a
traceback."""

import json
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from lakelab.cli import main
from lakelab.configs import METHODS
from lakelab.mlp.config import PRESETS
from lakelab.mlp.verify import on_the_lake
from lakelab.registry import BUILTINS, OBJECTIVES, compute_objective
from lakelab.testing import assert_objective
from lakelab.verify import verify
from tests.helpers import FAST_LAKE
from tests.mutants import MUTANTS, margin, mean, summed
from tests.mutants import label_logps as labelled

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


class DPOModule(torch.nn.Module):
    """A loss as a module, hyper-parameters in forward (as OpenRLHF-style code has it)."""

    def forward(self, c, r, rc, rr, beta=0.1, label_smoothing=0.0):
        return dpo(c, r, rc, rr, beta, label_smoothing)


def dpo_detached_reference(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(c, r, rc.detach(), rr.detach(), beta, label_smoothing)  # the reference is frozen


def dpo_bce(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    d = beta * ((c - rc) - (r - rr))
    target = torch.full_like(d, 1 - label_smoothing)
    return F.binary_cross_entropy_with_logits(d, target), {"margin": d.mean()}  # a tuple


def sft_masked_in_place(logps):
    x = logps.chosen
    x[~logps.chosen_mask] = 0.0  # edits its input in place, as training code may
    return -(x.sum(-1) / logps.chosen_mask.sum(-1)).mean()


def sft_logits_float32(batch):
    logps, mask = labelled(batch.chosen.float(), batch.chosen_labels)  # log_softmax in float32
    return -mean(logps, mask).mean()


@pytest.mark.parametrize(
    ("fn", "like", "inputs"),
    [
        (DPOModule(), "dpo", "sequences"),
        (dpo_detached_reference, "dpo", "sequences"),
        (dpo_bce, "dpo", "sequences"),
        (sft_masked_in_place, "sft", "tokens"),
        (sft_logits_float32, "sft", "logits"),
    ],
)
def test_unusual_but_correct_implementations_pass(fn, like, inputs):
    assert_objective(fn, like=like, inputs=inputs, hparams={"beta": 0.3} if like == "dpo" else None)


def test_hyper_parameters_reach_the_function():
    assert verify(dpo, like="dpo", hparams={"beta": 0.5, "label_smoothing": 0.2}).ok
    assert verify(simpo, like="simpo", hparams={"beta": 5.0, "gamma": 1.0}).ok


# -- the mutants: one bug each, each caught by the check named after it --------------------


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_every_mutant_is_caught_with_its_diagnosis(mutant):
    report = verify(mutant.fn, like=mutant.like, hparams=mutant.hparams, inputs=mutant.inputs)
    failed = report.failed
    for check, words in mutant.caught.items():
        assert check in failed, f"{mutant.name}: {check} passed\n{report}"
        assert words in failed[check], f"{mutant.name}: {check} says {failed[check]!r}"


def test_the_mutants_cover_every_bug_class_and_form():
    classes = {m.bug_class for m in MUTANTS}
    assert {"masking", "length normalisation", "scale", "numerics", "reductions"} <= classes
    assert "ignored hyper-parameter" in classes
    assert {m.inputs for m in MUTANTS} == {"sequences", "tokens", "logits"}


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
    with pytest.raises(
        ValueError, match=r"inputs must be one of \['sequences', 'tokens', 'logits'\]"
    ):
        verify(sft, like="sft", inputs="logs")
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
    assert main(["verify", "my_losses:good", "--like", "dpo", "--inputs", "logs"]) == 2
    assert main(["verify", "my_losses:good", "--like", "dpo", "--hparam", "beta"]) == 2


# -- the per-token form: where masking and length-normalisation bugs live ---------------------


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
    bugs = verify(lambda logps, gamma=0.95: ift(logps), like="ift", inputs="tokens").failed
    assert "hparam/gamma" in bugs  # gamma accepted but ignored


# -- the logits form: logits (B, T, V) and labels with -100, Hugging Face's shift ---------------


def sft_logits(batch):
    logps, mask = labelled(batch.chosen, batch.chosen_labels)
    return -mean(logps, mask).mean()


def dpo_logits(batch, beta=0.1, label_smoothing=0.0):
    def s(logits, labels):
        return summed(*labelled(logits, labels))

    chosen = s(batch.chosen, batch.chosen_labels) - s(batch.ref_chosen, batch.chosen_labels)
    rejected = s(batch.rejected, batch.rejected_labels) - s(
        batch.ref_rejected, batch.rejected_labels
    )
    d = beta * (chosen - rejected)
    return (-(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)).mean()


def test_correct_implementations_from_logits_pass_every_check():
    for fn, like, hparams in ((sft_logits, "sft", {}), (dpo_logits, "dpo", {"beta": 0.4})):
        report = assert_objective(fn, like=like, hparams=hparams, inputs="logits")
        assert {
            "masked_contents",
            "closed/" + ("mean_nll" if like == "sft" else "policy_is_reference"),
        } <= {c.name for c in report.checks}


def _per_token(name):
    return lambda logps, **knobs: compute_objective(name, logps, knobs)[0]


def _per_logit(name):
    return lambda batch, **knobs: compute_objective(name, batch.to_logps(), knobs)[0]


def _beyond_the_seven_slow(names):
    """The default seven in the fast subset, TRL's family with the slow tests."""
    return [n if n in METHODS else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("like", _beyond_the_seven_slow(OBJECTIVES))
def test_no_built_in_objective_is_flagged_in_any_form(like):
    objective = OBJECTIVES[like]
    forms = {"tokens": _per_token(like), "logits": _per_logit(like)}
    if objective.reduction != "tokens":
        forms["sequences"] = lambda *x, **k: objective.loss_fn(*x, **k)[0]
    for inputs, fn in forms.items():
        assert_objective(fn, like=like, inputs=inputs)


# -- closed forms and the tabular optimum: facts derived by hand ---------------------------------

CLOSED = {
    "sft": {"closed/mean_nll", "optimum"},
    "ift": {"closed/gamma_0_is_sft"},
    "dpo": {"closed/policy_is_reference", "optimum"},
    "ipo": {"closed/policy_is_reference", "closed/target_margin", "optimum"},
    "orpo": {"closed/equal_responses"},
    "asft": {"closed/even_odds"},
    "simpo": {"closed/equal_means", "optimum"},
    "dpo_norm": {"closed/policy_is_reference", "optimum"},
    "exo": {"closed/policy_is_reference"},
    "nca": {"closed/policy_is_reference"},
    "bco_pair": {"closed/policy_is_reference"},
    "sppo_hard": {"closed/policy_is_reference"},
    "apo": {"closed/policy_is_reference"},
    "discopop": {"closed/policy_is_reference"},
    "cpo": {"closed/equal_responses", "optimum"},
    "ld_dpo": {"closed/policy_is_reference"},
    "aot": {"closed/policy_is_reference"},
    "sft_token_mean": {"closed/token_mean"},
    "cpo_ipo": {"closed/equal_means"},
    "alphapo": {"closed/equal_means"},
    "kto": {
        "closed/policy_is_reference",
        "closed/desirable_only",
        "closed/reference_point",
        "closed/clamped_reference_point",
    },
    "bco": {"closed/policy_is_reference", "closed/desirable_only"},
    "apo_unpaired": {"closed/policy_is_reference", "closed/desirable_only"},
    "rpo": {"closed/policy_is_reference"},
    "cpo_nll": {"closed/equal_responses"},
    "wpo": {"closed/weights"},
}


def test_every_built_in_objective_has_a_closed_form_checked():
    assert set(CLOSED) == set(BUILTINS)


@pytest.mark.parametrize("like", _beyond_the_seven_slow(CLOSED))
def test_each_objective_has_its_closed_forms_checked(like):
    report = verify(_per_token(like), like=like, inputs="tokens")
    names = {c.name for c in report.checks}
    assert CLOSED[like] <= names and report.ok, report


def test_the_optimum_needs_the_closed_form_conditions():
    names = lambda **hp: {c.name for c in verify(_per_token("dpo"), "dpo", hp, "tokens").checks}  # noqa: E731
    assert "optimum" in names(variant="robust", beta=0.5)
    assert "optimum" not in names(variant="hinge") | names(label_smoothing=0.2)
    assert "closed/policy_is_reference" in names(variant="hinge")  # hinge: 1 at pi = pi_ref


# -- on the lake ---------------------------------------------------------------------------------

LAKE = PRESETS["quick"].replace(seeds=2, **FAST_LAKE)


@pytest.mark.slow  # two lake runs
def test_on_the_lake_the_reference_reproduces_itself_and_a_bug_shows(tmp_path):
    paths, table = on_the_lake(dpo, "dpo", config=LAKE, out=tmp_path / "same")
    metrics = pd.read_csv(paths["metrics"])
    mine, theirs = (metrics[metrics.method == m].reset_index() for m in ("yours", "dpo"))
    for key in ("kl_visitation", "success", "logp_optimal"):
        assert mine[key].to_numpy() == pytest.approx(theirs[key].to_numpy(), rel=1e-5, abs=1e-7)
    assert "| success |" in table and paths["figure"].exists()
    assert "yours" not in OBJECTIVES  # registered for the run only

    def ascending(c, r, rc, rr, beta=0.1, label_smoothing=0.0):  # the sign flipped
        return -dpo(c, r, rc, rr, beta, label_smoothing)

    paths, _ = on_the_lake(ascending, "dpo", config=LAKE, out=tmp_path / "flipped")
    final = pd.read_csv(paths["summary"]).set_index("method")
    assert final.loc["yours", "logp_optimal_mean"] < final.loc["dpo", "logp_optimal_mean"] - 1.0


@pytest.mark.slow  # two lake runs
def test_on_the_lake_in_the_per_token_forms(tmp_path):
    for inputs, fn in (("tokens", dpo_tokens), ("logits", dpo_logits)):
        paths, _ = on_the_lake(fn, "dpo", inputs=inputs, config=LAKE, out=tmp_path / inputs)
        final = pd.read_csv(paths["summary"]).set_index("method")
        for key in ("kl_visitation_mean", "logp_optimal_mean"):
            assert final.loc["yours", key] == pytest.approx(final.loc["dpo", key], rel=1e-4)


@pytest.mark.slow  # three lake runs
def test_on_the_lake_unpaired_weighted_and_mixed_objectives_reproduce_themselves(tmp_path):
    """--lake with KTO as TRL writes it (one loss per example), WPO and a mixture, per token:
    the function under test gives the reference's numbers."""
    from tests.mutants import kto, kto_point

    def per_example(d, u, rd, ru, kl, ref_kl, beta=0.1, desirable_weight=1.0,
                    undesirable_weight=1.0):  # fmt: skip
        return kto(d, u, rd, ru, kto_point(kl, ref_kl), beta, desirable_weight,
                   undesirable_weight)  # fmt: skip

    runs = (("kto", "sequences", per_example), ("wpo", "tokens", _per_token("wpo")),
            ("rpo", "logits", _per_logit("rpo")))  # fmt: skip
    for like, inputs, fn in runs:
        paths, _ = on_the_lake(fn, like, inputs=inputs, config=LAKE, out=tmp_path / like)
        final = pd.read_csv(paths["summary"]).set_index("method")
        for key in ("kl_visitation_mean", "logp_optimal_mean"):
            assert final.loc["yours", key] == pytest.approx(final.loc[like, key], rel=1e-4), like


@pytest.mark.slow  # a lake run
def test_the_command_runs_it_on_the_lake(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "def sft(logps):\n"
        "    m = logps.chosen_mask\n"
        "    return -(torch.where(m, logps.chosen, 0.0).sum(-1) / m.sum(-1)).mean()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = tmp_path / "lake"
    argv = [
        "verify",
        "mine:sft",
        "--like",
        "sft",
        "--inputs",
        "tokens",
        "--lake",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "0 failed" in printed
        and "| success |" in printed
        and "| sft (lakelab) | yours |" in printed
    )
    assert (out / "figure.png").exists()
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["yours", "kl_visitation_mean"] == pytest.approx(
        summary.loc["sft", "kl_visitation_mean"], rel=1e-5
    )
    assert main([*argv[:-2], "--lake-preset", "huge"]) == 2


def test_an_unpaired_function_may_return_one_loss_per_example():
    """KTO as TRL writes it: per-example losses, desirable then undesirable, concatenated;
    verify averages them and runs the batches of one kind and of unequal kinds."""
    from tests.mutants import kto, kto_point

    def per_example(d, u, rd, ru, kl, ref_kl, beta=0.1, desirable_weight=1.0,
                    undesirable_weight=1.0):  # fmt: skip
        return kto(d, u, rd, ru, kto_point(kl, ref_kl), beta, desirable_weight,
                   undesirable_weight)  # fmt: skip

    report = verify(per_example, like="kto", hparams={"desirable_weight": 1.33})
    names = {c.name for c in report.checks}
    assert report.ok, report
    assert {"agrees/desirable_only", "agrees/undesirable_only", "agrees/unequal_kinds"} <= names
