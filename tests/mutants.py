"""Mutants: objective implementations with one bug each, of the kinds that have shipped in
alignment libraries, each written the way a framework would write it (none calls lakelab).

``MUTANTS`` lists, per mutant, the bug class, the objective it claims to be, the input form,
and the checks of ``lakelab.verify`` that must fail with a diagnosis containing the given
words. ``tests/test_verify.py`` runs them all; a mutant that slips through fails there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Mutant:
    name: str
    bug_class: str
    like: str
    inputs: str
    fn: object
    caught: dict[str, str]  # check name -> words its diagnosis must contain
    hparams: dict = field(default_factory=dict)


# -- helpers, as a framework writes them --------------------------------------------------------


def dpo(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    d = beta * ((c - rc) - (r - rr))
    return (-(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)).mean()


def summed(x, mask):
    return torch.where(mask, x, 0.0).sum(-1)


def mean(x, mask):
    return summed(x, mask) / mask.sum(-1)


def margin(logps, reduce, rejected_mask=None):
    """(R(y_w) - R_ref(y_w)) - (R(y_l) - R_ref(y_l)) with R the given reduction."""
    mc, mr = logps.chosen_mask, logps.rejected_mask if rejected_mask is None else rejected_mask
    chosen = reduce(logps.chosen, mc) - reduce(logps.ref_chosen, mc)
    return chosen - (reduce(logps.rejected, mr) - reduce(logps.ref_rejected, mr))


def label_logps(logits, labels, shift=True):
    """Per-token log-probs of the labels and the mask of scored positions (-100 ignored)."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != -100
    logps = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logps, mask


def log_odds(a):
    return a - torch.log(-torch.expm1(a.clamp(max=-1e-6)))


# -- the mutants ---------------------------------------------------------------------------------


def dpo_times_beta(c, r, rc, rr, beta=0.1, label_smoothing=0.0):  # trl#1612's class
    return beta * dpo(c, r, rc, rr, beta, label_smoothing)


def dpo_beta_squared(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return -F.logsigmoid(beta**2 * ((c - rc) - (r - rr))).mean()


def dpo_batch_sum(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(c, r, rc, rr, beta, label_smoothing) * len(c)


def dpo_log_of_sigmoid(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    d = beta * ((c - rc) - (r - rr))
    eps = label_smoothing
    return (-(1 - eps) * torch.log(torch.sigmoid(d)) - eps * torch.log(torch.sigmoid(-d))).mean()


def dpo_no_label_smoothing(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(c, r, rc, rr, beta, 0.0)


def dpo_misaligned(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(c, r.roll(1), rc, rr.roll(1), beta, label_smoothing)


def dpo_detached_rejected(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(c, r.detach() + 0 * r, rc, rr, beta, label_smoothing)


def dpo_no_reference(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return -F.logsigmoid(beta * (c - r)).mean() + 0 * (rc + rr).sum()


def ipo_target_one_over_beta(c, r, rc, rr, beta=0.1):
    return (((c - rc) - (r - rr) - 1 / beta) ** 2).mean()


def orpo_naive_log_odds(c, r, lam=0.1):  # trl#1491: log(1 - exp(A)) is -inf at A = 0
    def odds(a):
        return a - torch.log(1 - torch.exp(a))

    return (-c - lam * F.logsigmoid(odds(c) - odds(r))).mean()


def asft_without_log_odds(c, r, lam=1.0, beta=1.0):
    return (-c - lam * (F.logsigmoid(beta * c) + F.logsigmoid(-beta * r))).mean()


def simpo_gamma_ignored(c, r, beta=2.0, gamma=0.5):
    return -F.logsigmoid(beta * (c - r)).mean()


def ipo_on_summed_tokens(logps, beta=0.1):  # trl#1022
    return ((margin(logps, summed) - 1 / (2 * beta)) ** 2).mean()


def dpo_on_mean_tokens(logps, beta=0.1, label_smoothing=0.0):
    return (-F.logsigmoid(beta * margin(logps, mean))).mean()


def sft_token_level_mean(logps):
    m = logps.chosen_mask
    return -(logps.chosen * m).sum() / m.sum()


def sft_length_from_values(logps):  # the HALOs class: the length counted from the log-probs
    x = torch.where(logps.chosen_mask, logps.chosen, 0.0)
    return -(x.sum(-1) / (x != 0).sum(-1).clamp(min=1)).mean()


def sft_padding_counted(logps):
    x = torch.where(logps.chosen_mask, logps.chosen, 0.0)
    return -(x.sum(-1) / x.shape[-1]).mean()


def dpo_rejected_prompt_unmasked(logps, beta=0.1, label_smoothing=0.0):  # OpenRLHF#294
    mr = logps.rejected_mask
    with_prompt = torch.cumsum(mr.flip(-1).int(), -1).flip(-1) > 0  # prompt and response
    return (-F.logsigmoid(beta * margin(logps, summed, with_prompt))).mean()


def sft_logits_unshifted(batch):
    logps, mask = label_logps(batch.chosen, batch.chosen_labels, shift=False)
    return -(torch.where(mask, logps, 0.0).sum(-1) / mask.sum(-1)).mean()


def sft_logits_ignore_index_gathered(batch):  # -100 clamped to token 0 and then counted
    logps, mask = label_logps(batch.chosen, batch.chosen_labels)
    return -(logps.sum(-1) / mask.sum(-1)).mean()


def dpo_swapped(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(r, c, rr, rc, beta, label_smoothing)


def dpo_variant_ignored(c, r, rc, rr, beta=0.1, variant="sigmoid", label_smoothing=0.0):
    return dpo(c, r, rc, rr, beta, label_smoothing)  # takes variant, always sigmoid


def dpo_first_rows(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    d = beta * ((c - rc) - (r - rr))
    return -F.logsigmoid(d)[:8].mean()  # a hard-coded batch size


def dpo_clamped_sums(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(c.clamp(min=-5000), r.clamp(min=-5000), rc, rr, beta, label_smoothing)


def dpo_in_half_precision(c, r, rc, rr, beta=0.1, label_smoothing=0.0):
    return dpo(*(x.half().float() for x in (c, r, rc, rr)), beta, label_smoothing)


def orpo_with_trls_name(c, r, beta=0.1):  # TRL's ORPO calls lam "beta"
    return (-c - beta * F.logsigmoid(log_odds(c) - log_odds(r))).mean()


def kto(d, u, rd, ru, z0, beta, w_d, w_u):
    """KTO's per-example losses, desirable then undesirable, at reference point z0."""
    return torch.cat([w_d * (1 - torch.sigmoid(beta * (d - rd - z0))),
                      w_u * (1 - torch.sigmoid(beta * (z0 - (u - ru))))])  # fmt: skip


def kto_point(kl, ref_kl):
    return (kl - ref_kl).mean().clamp(min=0).detach()


def kto_mean_per_kind(d, u, rd, ru, kl, ref_kl, beta=0.1, desirable_weight=1.0,
                      undesirable_weight=1.0):  # fmt: skip
    """Each kind averaged, then the two means averaged: right only for equal counts."""
    losses = kto(d, u, rd, ru, kto_point(kl, ref_kl), beta, desirable_weight, undesirable_weight)
    return (losses[: len(d)].mean() + losses[len(d) :].mean()) / 2


def kto_point_from_examples(d, u, rd, ru, kl, ref_kl, beta=0.1, desirable_weight=1.0,
                            undesirable_weight=1.0):  # fmt: skip
    """z0 from the batch's own (matched) examples instead of the mismatched pairs."""
    z0 = (torch.cat([d - rd, u - ru])).mean().clamp(min=0).detach()
    return kto(d, u, rd, ru, z0, beta, desirable_weight, undesirable_weight).mean()


def kto_unclamped(d, u, rd, ru, kl, ref_kl, beta=0.1, desirable_weight=1.0,
                  undesirable_weight=1.0):  # fmt: skip
    z0 = (kl - ref_kl).mean().detach()
    return kto(d, u, rd, ru, z0, beta, desirable_weight, undesirable_weight).mean()


def kto_weights_swapped(d, u, rd, ru, kl, ref_kl, beta=0.1, desirable_weight=1.0,
                        undesirable_weight=1.0):  # fmt: skip
    z0 = kto_point(kl, ref_kl)
    return kto(d, u, rd, ru, z0, beta, undesirable_weight, desirable_weight).mean()


MUTANTS = [
    Mutant("dpo_times_beta", "scale", "dpo", "sequences", dpo_times_beta,
           {"agrees/random": "scaled by beta", "closed/policy_is_reference": "rescaled"},
           {"beta": 0.5}),
    Mutant("dpo_beta_squared", "scale", "dpo", "sequences", dpo_beta_squared,
           {"optimum": "b = 0.01", "hparam/beta": "beta is ignored or used differently"}),
    Mutant("dpo_batch_sum", "reductions", "dpo", "sequences", dpo_batch_sum,
           {"batch_size": "summed instead of averaged",
            "agrees/random": "summed instead of averaged"}),
    Mutant("dpo_log_of_sigmoid", "numerics", "dpo", "sequences", dpo_log_of_sigmoid,
           {"float32": "logsigmoid"}),
    Mutant("orpo_naive_log_odds", "numerics", "orpo", "sequences", orpo_naive_log_odds,
           {"agrees/extremes": ""}),
    Mutant("dpo_no_label_smoothing", "ignored hyper-parameter", "dpo", "sequences",
           dpo_no_label_smoothing, {"hparam/label_smoothing": "label_smoothing is ignored"}),
    Mutant("simpo_gamma_ignored", "ignored hyper-parameter", "simpo", "sequences",
           simpo_gamma_ignored, {"hparam/gamma": "gamma is ignored",
                                 "closed/equal_means": "(gamma, 1 / (2 beta)) is not subtracted"}),
    Mutant("dpo_misaligned", "pairing", "dpo", "sequences", dpo_misaligned,
           {"agrees/random": "differs"}),
    Mutant("dpo_detached_rejected", "gradient", "dpo", "sequences", dpo_detached_rejected,
           {"agrees/random": "gradient does not agree"}),
    Mutant("dpo_no_reference", "formula", "dpo", "sequences", dpo_no_reference,
           {"closed/policy_is_reference": "not subtracted", "optimum": "minimised elsewhere"}),
    Mutant("ipo_target_one_over_beta", "formula", "ipo", "sequences", ipo_target_one_over_beta,
           {"closed/policy_is_reference": "target margin", "closed/target_margin": "target",
            "optimum": "2 times the optimum's"}),
    Mutant("asft_without_log_odds", "formula", "asft", "sequences", asft_without_log_odds,
           {"closed/even_odds": "log-odds"}),
    Mutant("ipo_on_summed_tokens", "length normalisation", "ipo", "tokens", ipo_on_summed_tokens,
           {"agrees/random": "uses summed log-probs where ipo uses mean ones",
            "closed/target_margin": "mean log-probs"}),
    Mutant("dpo_on_mean_tokens", "length normalisation", "dpo", "tokens", dpo_on_mean_tokens,
           {"agrees/random": "uses mean log-probs where dpo uses summed ones"}),
    Mutant("sft_token_level_mean", "reductions", "sft", "tokens", sft_token_level_mean,
           {"agrees/random": "token-level mean over the batch",
            "closed/mean_nll": "token-level mean"}),
    Mutant("sft_length_from_values", "length normalisation", "sft", "tokens",
           sft_length_from_values, {"agrees/extremes": ""}),
    Mutant("sft_padding_counted", "masking", "sft", "tokens", sft_padding_counted,
           {"agrees/random": "", "closed/mean_nll": ""}),
    Mutant("dpo_rejected_prompt_unmasked", "masking", "dpo", "tokens",
           dpo_rejected_prompt_unmasked, {"masked_contents": "prompt or padding positions leak"}),
    Mutant("sft_logits_unshifted", "masking", "sft", "logits", sft_logits_unshifted,
           {"agrees/extremes": "labels are not shifted", "masked_contents": "leak"}),
    Mutant("sft_logits_ignore_index_gathered", "masking", "sft", "logits",
           sft_logits_ignore_index_gathered, {"masked_contents": "label -100 gathered"}),
    Mutant("dpo_swapped", "pairing", "dpo", "sequences", dpo_swapped,
           {"agrees/random": "chosen and rejected are swapped", "optimum": "reversed"}),
    Mutant("dpo_variant_ignored", "ignored hyper-parameter", "dpo", "sequences",
           dpo_variant_ignored, {"hparam/variant=hinge": "variant='hinge' is ignored"}),
    Mutant("dpo_first_rows", "reductions", "dpo", "sequences", dpo_first_rows,
           {"batch_size": "uses only some of its rows"}),
    Mutant("dpo_clamped_sums", "numerics", "dpo", "sequences", dpo_clamped_sums,
           {"agrees/extremes": "only on extreme inputs"}),
    Mutant("dpo_in_half_precision", "numerics", "dpo", "sequences", dpo_in_half_precision,
           {"agrees/random": "a loss of precision"}),
    Mutant("orpo_with_trls_name", "ignored hyper-parameter", "orpo", "sequences",
           orpo_with_trls_name, {"signature": "under another name"}),
    Mutant("kto_mean_per_kind", "reductions", "kto", "sequences", kto_mean_per_kind,
           {"agrees/unequal_kinds": "a mean per kind", "agrees/desirable_only": "mean per kind",
            "closed/desirable_only": "NaN"}),
    Mutant("kto_point_from_examples", "formula", "kto", "sequences", kto_point_from_examples,
           {"closed/reference_point": "taken from the examples"}),
    Mutant("kto_unclamped", "formula", "kto", "sequences", kto_unclamped,
           {"closed/clamped_reference_point": "not clamped"}),
    Mutant("kto_weights_swapped", "ignored hyper-parameter", "kto", "sequences",
           kto_weights_swapped, {"closed/policy_is_reference": "weights",
                                 "agrees/random": "undesirable_weight are swapped"},
           {"desirable_weight": 1.33}),
]  # fmt: skip
