"""The objectives by name: formulas, papers, hyper-parameters, and one entry point for loops.

    obj = get_objective("dpo")                       # Objective: metadata + loss function
    obj.formula, obj.latex, obj.paper, obj.equation  # what the README, app and notebooks show
    hp = resolve_hparams("dpo", {"beta": 0.5})       # defaults filled in, ranges checked
    loss, metrics = compute_objective("dpo", SequenceLogps(...), hp)

Each entry is the one source of its objective's facts: the README's table
(``python -m lakelab.tables`` writes it, and docs/trl.md's), the app's explorer and notebook 02
render them from here, and the tests check each formula against its function's docstring.

`compute_objective` is what both training loops call: they hand over per-token log-probs
(B, T) and masks, it applies the objective's reduction (S for DPO, A for SFT, IPO, ORPO, ASFT,
SimPO, per-token for IFT) and calls the function in `lakelab.objectives` unchanged. Model-side
hyper-parameters (IFT's `lam` and `residual`) are resolved and validated here too, but the
training loop uses them (for the mixed forward pass), so they are not passed to the loss.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import torch

from lakelab import mixtures, pairwise, reference_free, sequences, unpaired
from lakelab import objectives as obj
from lakelab.mixtures import weight  # noqa: F401  (lakelab.weight)
from lakelab.objective_spec import HyperParam, Objective, check_objective
from lakelab.reductions import DISCOUNT, IFT_WEIGHTINGS
from lakelab.residual import MIX_WEIGHT, RESIDUAL_VARIANTS
from lakelab.sequences import SequenceLogps
from lakelab.validate import Interval

__all__ = [
    "OBJECTIVES",
    "HyperParam",
    "Objective",
    "SequenceLogps",
    "check_objective",
    "compute_objective",
    "get_objective",
    "load_entry_points",
    "loss_on",
    "mixture",
    "register_objective",
    "resolve_hparams",
    "sequence_inputs",
    "unregister_objective",
]


def _real(name: str, default: float, interval: Interval, **kw: Any) -> HyperParam:
    return HyperParam(name, default, interval=interval, **kw)


def _choice(name: str, default: str, choices: tuple[str, ...], **kw: Any) -> HyperParam:
    return HyperParam(name, default, choices=tuple(choices), **kw)


F_DIVERGENCE = (  # f-DPO's knobs, TRL's names: DPO, and EXO and DiscoPOP as TRL allows
    _choice(
        "f_divergence_type",
        "reverse_kl",
        obj.F_DIVERGENCES,
        help="the divergence from the reference (f-DPO); reverse_kl is DPO's",
    ),
    _real(
        "f_alpha_divergence_coef",
        0.5,
        obj.POSITIVE,
        help="a of the alpha divergence (TRL's default 0.5; 1: reverse KL)",
    ),
)

# the f-divergences TRL's code takes in float64 too (its alpha divergence is float32 only)
F_DIVERGENCE_SPELLINGS = {
    "reverse_kl": "",
    "forward_kl": ", f_divergence_type='forward_kl'",
    "js_divergence": ", f_divergence_type='js_divergence'",
}

OBJECTIVES: dict[str, Objective] = {
    "sft": Objective(
        name="sft",
        title="SFT",
        loss_fn=obj.sft_loss,
        needs_pairs=False,
        needs_reference=False,
        reduction="mean",
        hyperparams=(),
        summary="Maximise the mean log-likelihood of the chosen response.",
        formula="L = -A(y_w)",
        latex=r"\mathcal{L}_{\mathrm{SFT}} = -A(y_w), \qquad "
        r"A(y) = \frac{1}{|y|} \sum_t \log \pi_\theta(y_t \mid x, y_{<t})",
        paper="Maximum likelihood (teacher forcing)",
    ),
    "ift": Objective(
        name="ift",
        title="IFT (Intuitive Fine-Tuning)",
        loss_fn=obj.ift_loss,
        needs_pairs=False,
        needs_reference=False,
        reduction="tokens",
        hyperparams=(
            _real("lam", 0.2, MIX_WEIGHT, model_side=True, help="temporal residual weight"),
            _choice(
                "residual",
                "greedy",
                RESIDUAL_VARIANTS,
                model_side=True,
                help="prediction mixed in: 'greedy' argmax (official code) or 'expected' (eq. 17)",
            ),
            _real("gamma", 0.95, DISCOUNT, help="discount of the relation propagation"),
            _choice(
                "weighting",
                "loss",
                IFT_WEIGHTINGS,
                help="token weights: 'loss' (official code), 'prefix' (eq. 20), 'none' (SFT)",
            ),
        ),
        summary="SFT on inputs mixed with the model's own predictions; earlier tokens weigh more.",
        formula="L = sum_i m_i (-logp'_i) W_i / N",
        latex=r"\mathcal{L}_{\mathrm{IFT}} = \frac{1}{N} \sum_{i=1}^{N} W_i \,"
        r"\bigl(-\log \pi_\theta(y_i \mid \tilde{s}_i)\bigr), \quad "
        r"\tilde{s}_i = (1 - \lambda)\, s_i + \lambda\, \pi_\theta(s_{i-1}), \quad "
        r"W_i \propto \sum_{j \ge i} \gamma^{\,j - i} c_j",
        paper="Hua et al. 2024, arXiv 2405.11870 (code: TsinghuaC3I/Intuitive-Fine-Tuning)",
        equation="eqs. 17-22",
        mixed_pass=True,
    ),
    "dpo": Objective(
        name="dpo",
        title="DPO",
        loss_fn=obj.dpo_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature (TRL default 0.1)"),
            _choice(
                "variant",
                "sigmoid",
                obj.DPO_VARIANTS,
                help="sigmoid (DPO), hinge (SLiC), robust (rDPO)",
            ),
            _real(
                "label_smoothing",
                0.0,
                obj.LABEL_SMOOTHING,
                help="assumed label-flip rate eps; 0 for hinge",
            ),
            *F_DIVERGENCE,
        ),
        summary="Raise the reference-relative margin of chosen over rejected (Bradley-Terry).",
        formula="L = -logsigmoid(d); d = beta * ((S_w - S_ref_w) - (S_l - S_ref_l))",
        latex=r"\mathcal{L}_{\mathrm{DPO}} = -\log \sigma\Bigl(\beta \bigl["
        r"(S_w - S^{\mathrm{ref}}_w) - (S_l - S^{\mathrm{ref}}_l)\bigr]\Bigr), \qquad "
        r"S(y) = \sum_t \log \pi_\theta(y_t \mid x, y_{<t})",
        paper="Rafailov et al. 2023, arXiv 2305.18290",
        equation="eq. 7",
        trl={
            "DPOTrainer(loss_type='sigmoid')": {"variant": "sigmoid", "label_smoothing": 0.0},
            "DPOTrainer(loss_type='hinge')": {"variant": "hinge"},
            "DPOTrainer(loss_type='robust')": {"variant": "robust"},
            "DPOTrainer(loss_type='sigmoid', f_divergence_type='forward_kl')": {
                "variant": "sigmoid",
                "label_smoothing": 0.0,
                "f_divergence_type": "forward_kl",
            },
            "DPOTrainer(loss_type='sigmoid', f_divergence_type='js_divergence')": {
                "variant": "sigmoid",
                "label_smoothing": 0.0,
                "f_divergence_type": "js_divergence",
            },
            "DPOTrainer(loss_type='sigmoid', f_divergence_type='alpha_divergence')": {
                "variant": "sigmoid",
                "label_smoothing": 0.0,
                "f_divergence_type": "alpha_divergence",
            },
        },
    ),
    "ipo": Objective(
        name="ipo",
        title="IPO",
        loss_fn=obj.ipo_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="mean",
        hyperparams=(_real("beta", 0.1, obj.POSITIVE, help="target margin is 1/(2 beta)"),),
        summary="Regress the reference-relative margin onto 1/(2 beta) instead of pushing it up.",
        formula="L = (h - 1 / (2 beta))^2; h = (A_w - A_ref_w) - (A_l - A_ref_l)",
        latex=r"\mathcal{L}_{\mathrm{IPO}} = \Bigl(h - \frac{1}{2 \beta}\Bigr)^2, \qquad "
        r"h = (A_w - A^{\mathrm{ref}}_w) - (A_l - A^{\mathrm{ref}}_l)",
        paper="Azar et al. 2023, arXiv 2310.12036 (on mean log-probs, as TRL's 'ipo')",
        trl={"DPOTrainer(loss_type='ipo')": {}},
    ),
    "orpo": Objective(
        name="orpo",
        title="ORPO",
        loss_fn=obj.orpo_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(
            _real("lam", 0.1, obj.NONNEGATIVE, help="weight of the odds-ratio term (TRL's beta)"),
        ),
        summary="SFT plus a log-odds-ratio preference term; no reference model.",
        formula="L = -A_w - lam * logsigmoid(logodds(y_w) - logodds(y_l)); "
        "logodds(y) = A - log(1 - exp(A))",
        latex=r"\mathcal{L}_{\mathrm{ORPO}} = -A_w - \lambda \log \sigma\bigl("
        r"\operatorname{logodds}(y_w) - \operatorname{logodds}(y_l)\bigr), \qquad "
        r"\operatorname{logodds}(y) = A(y) - \log\bigl(1 - e^{A(y)}\bigr)",
        paper="Hong et al. 2024, arXiv 2403.07691",
        equation="eqs. 6-7",
        trl={"ORPOTrainer": {}},
    ),
    "asft": Objective(
        name="asft",
        title="ASFT (Aligned SFT)",
        loss_fn=obj.asft_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(
            _real("lam", 1.0, obj.NONNEGATIVE, help="weight of the absolute-likelihood terms"),
            _real("beta", 1.0, obj.POSITIVE, help="scale of the log-odds"),
        ),
        summary="SFT plus an absolute likelihood term per response; no pairing, no reference.",
        formula="L = -A_w - lam * [logsigmoid(beta * logodds(y_w)) + "
        "logsigmoid(-beta * logodds(y_l))]",
        latex=r"\mathcal{L}_{\mathrm{ASFT}} = -A_w - \lambda \bigl[\log \sigma\bigl(\beta "
        r"\operatorname{logodds}(y_w)\bigr) + \log \sigma\bigl(-\beta "
        r"\operatorname{logodds}(y_l)\bigr)\bigr]",
        paper="Wang et al. 2024, arXiv 2409.10571 (Aligned SFT; restated in arXiv 2502.01237)",
    ),
    "simpo": Objective(
        name="simpo",
        title="SimPO",
        loss_fn=obj.simpo_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(
            _real("beta", 2.0, obj.POSITIVE, help="reward scale"),
            _real("gamma", 0.5, obj.NONNEGATIVE, help="target reward margin"),
        ),
        summary="Length-normalised margin with a target gap; no reference model.",
        formula="L = -logsigmoid(beta * (A_w - A_l) - gamma)",
        latex=r"\mathcal{L}_{\mathrm{SimPO}} = -\log \sigma\bigl(\beta (A_w - A_l) - \gamma\bigr)",
        paper="Meng et al. 2024, arXiv 2405.14734",
        equation="eq. 6",
        trl={"CPOTrainer(loss_type='simpo', cpo_alpha=0.0)": {}},
    ),
    # -- the other loss types of TRL's DPO trainer (lakelab.pairwise) --------------------------
    "exo": Objective(
        name="exo",
        title="EXO",
        loss_fn=pairwise.exo_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _real(
                "label_smoothing",
                1e-3,
                pairwise.EXO_SMOOTHING,
                help="the labels' mass eps on the rejected response (must be > 0)",
            ),
            *F_DIVERGENCE,
        ),
        summary="Match the pair's policy distribution to soft labels by a reverse KL.",
        formula="L = q_w (log q_w - log(1 - eps)) + q_l (log q_l - log eps); "
        "d = beta * (r_w - r_l); q_w = sigmoid(d), q_l = sigmoid(-d); "
        "r_w = S_w - S_ref_w, r_l = S_l - S_ref_l",
        latex=r"\mathcal{L}_{\mathrm{EXO}} = q_w \log \frac{q_w}{1 - \epsilon} + q_l \log "
        r"\frac{q_l}{\epsilon}, \qquad q_w = \sigma\bigl(\beta (r_w - r_l)\bigr) = 1 - q_l",
        paper="Ji et al. 2024, arXiv 2402.00856",
        equation="eq. 16",
        trl={
            f"DPOTrainer(loss_type='exo_pair'{by})": {"f_divergence_type": f}
            for f, by in F_DIVERGENCE_SPELLINGS.items()
        },
    ),
    "nca": Objective(
        name="nca",
        title="NCA",
        loss_fn=pairwise.nca_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(_real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),),
        summary="Push the chosen reward up on its own and both rewards down by half.",
        formula="L = -logsigmoid(beta r_w) - 0.5 logsigmoid(-beta r_w) - 0.5 logsigmoid(-beta r_l)"
        "; r_w = S_w - S_ref_w, r_l = S_l - S_ref_l",
        latex=r"\mathcal{L}_{\mathrm{NCA}} = -\log \sigma(\beta r_w) - \tfrac12 \log "
        r"\sigma(-\beta r_w) - \tfrac12 \log \sigma(-\beta r_l)",
        paper="Chen et al. 2024, arXiv 2402.05369",
        trl={"DPOTrainer(loss_type='nca_pair')": {}},
    ),
    "bco_pair": Objective(
        name="bco_pair",
        title="BCO (pairs)",
        loss_fn=pairwise.bco_pair_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _real("delta", 0.0, obj.REAL, help="reward shift (0: TRL's bco_pair)"),
        ),
        summary="Classify the chosen response as good and the rejected as bad by the reward.",
        formula="L = -logsigmoid(beta r_w - delta) - logsigmoid(-(beta r_l - delta)); "
        "r_w = S_w - S_ref_w, r_l = S_l - S_ref_l",
        latex=r"\mathcal{L}_{\mathrm{BCO}} = -\log \sigma(\beta r_w - \delta) - \log "
        r"\sigma\bigl(-(\beta r_l - \delta)\bigr)",
        paper="Jung et al. 2024, arXiv 2404.04656",
        trl={"DPOTrainer(loss_type='bco_pair')": {"delta": 0.0}},
    ),
    "sppo_hard": Objective(
        name="sppo_hard",
        title="SPPO (hard)",
        loss_fn=pairwise.sppo_hard_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(_real("beta", 0.1, obj.POSITIVE, help="targets are +-1/(2 beta)"),),
        summary="Regress each log-ratio onto its own target, +1/(2 beta) chosen, -1/(2 beta) "
        "rejected.",
        formula="L = (r_w - 1 / (2 beta))^2 + (r_l + 1 / (2 beta))^2; "
        "r_w = S_w - S_ref_w, r_l = S_l - S_ref_l",
        latex=r"\mathcal{L}_{\mathrm{SPPO}} = \Bigl(r_w - \frac{1}{2\beta}\Bigr)^2 + "
        r"\Bigl(r_l + \frac{1}{2\beta}\Bigr)^2",
        paper="Wu et al. 2024, arXiv 2405.00675",
        equation="eq. 4.7, P hard",
        trl={"DPOTrainer(loss_type='sppo_hard')": {}},
    ),
    "apo": Objective(
        name="apo",
        title="APO",
        loss_fn=pairwise.apo_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _choice(
                "variant",
                "zero",
                pairwise.APO_VARIANTS,
                help="zero: chosen up, rejected down; down: both down, rejected more",
            ),
        ),
        summary="Anchor each reward: the chosen up and the rejected down (zero), or both down.",
        formula='"zero": L = (1 - sigmoid(beta r_w)) + sigmoid(beta r_l); '
        "r_w = S_w - S_ref_w, r_l = S_l - S_ref_l",
        latex=r"\mathcal{L}_{\mathrm{APO\text{-}zero}} = 1 - \sigma(\beta r_w) + "
        r"\sigma(\beta r_l)",
        paper="D'Oosterlinck et al. 2024, arXiv 2408.06266",
        equation="eqs. 7-8",
        trl={
            "DPOTrainer(loss_type='apo_zero')": {"variant": "zero"},
            "DPOTrainer(loss_type='apo_down')": {"variant": "down"},
        },
    ),
    "discopop": Objective(
        name="discopop",
        title="DiscoPOP",
        loss_fn=pairwise.discopop_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _real("discopop_tau", 0.05, obj.POSITIVE, help="temperature of the blend"),
            *F_DIVERGENCE,
        ),
        summary="DPO's logistic loss blended with an exponential one by the margin's sign.",
        formula="L = (1 - m) (-logsigmoid(rho)) + m exp(-rho); "
        "rho = beta * (r_w - r_l); m = sigmoid(rho / tau); "
        "r_w = S_w - S_ref_w, r_l = S_l - S_ref_l",
        latex=r"\mathcal{L}_{\mathrm{DiscoPOP}} = (1 - m) \bigl(-\log \sigma(\rho)\bigr) + "
        r"m\, e^{-\rho}, \qquad m = \sigma(\rho / \tau), \quad \rho = \beta (r_w - r_l)",
        paper="Lu et al. 2024, arXiv 2406.08414",
        equation="eq. 5",
        trl={
            f"DPOTrainer(loss_type='discopop'{by})": {"f_divergence_type": f}
            for f, by in F_DIVERGENCE_SPELLINGS.items()
        },
    ),
    "dpo_norm": Objective(
        name="dpo_norm",
        title="DPO (length-normalised)",
        loss_fn=pairwise.dpo_norm_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="mean",
        hyperparams=(_real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),),
        summary="DPO on mean instead of summed log-probs.",
        formula="L = -logsigmoid(d); d = beta * ((A_w - A_ref_w) - (A_l - A_ref_l))",
        latex=r"\mathcal{L}_{\mathrm{DPO\text{-}norm}} = -\log \sigma\Bigl(\beta \bigl["
        r"(A_w - A^{\mathrm{ref}}_w) - "
        r"(A_l - A^{\mathrm{ref}}_l)\bigr]\Bigr)",
        paper="Lambert et al. 2024 (Tulu 3), arXiv 2411.15124",
        trl={"DPOTrainer(loss_type='sigmoid_norm')": {}},
    ),
    "aot": Objective(
        name="aot",
        title="AOT",
        loss_fn=pairwise.aot_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _choice(
                "variant",
                "paired",
                pairwise.AOT_VARIANTS,
                help="paired: sorted margins; unpaired: sorted chosen and rejected rewards",
            ),
            _real("label_smoothing", 0.0, obj.LABEL_SMOOTHING, help="assumed label-flip rate"),
        ),
        summary="DPO's logistic loss on the batch's sorted margins: quantiles matched, not pairs.",
        formula='"paired":   delta = sort(S_w - S_l) - sort(S_ref_w - S_ref_l); '
        "L = -(1 - eps) logsigmoid(beta delta) - eps logsigmoid(-beta delta)",
        latex=r"\mathcal{L}_{\mathrm{AOT}} = -\log \sigma\bigl(\beta\,[\mathrm{sort}(S_w - "
        r"S_l) - \mathrm{sort}(S^{\mathrm{ref}}_w - S^{\mathrm{ref}}_l)]\bigr)",
        paper="Melnyk et al. 2024, arXiv 2406.05882",
        batchwise=True,
        trl={
            "DPOTrainer(loss_type='aot')": {"variant": "paired"},
            "DPOTrainer(loss_type='aot_unpaired')": {"variant": "unpaired"},
        },
    ),
    "ld_dpo": Objective(
        name="ld_dpo",
        title="LD-DPO",
        loss_fn=pairwise.ld_dpo_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="tokens",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _real("ld_alpha", 0.5, pairwise.UNIT, help="weight of the longer response's tail"),
        ),
        summary="DPO with the tokens beyond the shorter response's length down-weighted.",
        formula="n = min(|y_w|, |y_l|); "
        "S'(y) = sum_{t <= n} logp_t + alpha sum_{t > n} logp_t; "
        "d = beta * ((S'_w - S'_ref_w) - (S'_l - S'_ref_l)); L = -logsigmoid(d)",
        latex=r"\mathcal{L}_{\mathrm{LD\text{-}DPO}} = -\log \sigma\bigl(\beta [(S'_w - "
        r"S'^{\mathrm{ref}}_w) - (S'_l - S'^{\mathrm{ref}}_l)]\bigr), \quad S'(y) = "
        r"\sum_{t \le n} \log \pi_t + \alpha \sum_{t > n} \log \pi_t",
        paper="Liu et al. 2024, arXiv 2409.06411",
        trl={"DPOTrainer(loss_type='sigmoid', ld_alpha=alpha)": {}},
    ),
    # -- the other loss types of TRL's CPO trainer (lakelab.reference_free) -------------------
    "cpo": Objective(
        name="cpo",
        title="CPO",
        loss_fn=reference_free.cpo_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature (TRL default 0.1)"),
            _choice("variant", "sigmoid", reference_free.CPO_VARIANTS, help="sigmoid or hinge"),
            _real(
                "label_smoothing",
                0.0,
                obj.LABEL_SMOOTHING,
                help="assumed label-flip rate eps; 0 for hinge",
            ),
        ),
        summary="DPO with a uniform reference: the summed log-prob margin, no reference model.",
        formula="d = beta * (S_w - S_l); "
        '"sigmoid": L = -(1 - eps) logsigmoid(d) - eps logsigmoid(-d)',
        latex=r"\mathcal{L}_{\mathrm{CPO}} = -\log \sigma\bigl(\beta (S_w - S_l)\bigr)",
        paper="Xu et al. 2024, arXiv 2401.08417 (without its NLL term)",
        equation="eq. 3 (as TRL's comment numbers it)",
        trl={
            "CPOTrainer(loss_type='sigmoid', cpo_alpha=0.0)": {"variant": "sigmoid"},
            "CPOTrainer(loss_type='hinge', cpo_alpha=0.0)": {"variant": "hinge"},
        },
    ),
    "cpo_ipo": Objective(
        name="cpo_ipo",
        title="IPO without a reference",
        loss_fn=reference_free.cpo_ipo_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(_real("beta", 0.1, obj.POSITIVE, help="target margin is 1/(2 beta)"),),
        summary="Regress the mean log-prob margin onto 1/(2 beta), no reference model.",
        formula="L = (A_w - A_l - 1 / (2 beta))^2",
        latex=r"\mathcal{L}_{\mathrm{IPO}} = \Bigl(A_w - A_l - \frac{1}{2\beta}\Bigr)^2",
        paper="Azar et al. 2023, arXiv 2310.12036, as TRL's CPO trainer writes it",
        trl={"CPOTrainer(loss_type='ipo', cpo_alpha=0.0)": {}},
    ),
    "alphapo": Objective(
        name="alphapo",
        title="AlphaPO",
        loss_fn=reference_free.alphapo_loss,
        needs_pairs=True,
        needs_reference=False,
        reduction="mean",
        hyperparams=(
            _real("beta", 2.0, obj.POSITIVE, help="reward scale"),
            _real("gamma", 0.5, obj.NONNEGATIVE, help="target reward margin"),
            _real("alpha", 0.0, obj.REAL, help="reward shape (0: SimPO)"),
        ),
        summary="SimPO on a reward reshaped by alpha.",
        formula="L = -logsigmoid(beta * (u_w - u_l) - gamma); "
        "u = (1 - p^(-alpha)) / alpha with p = exp(A)",
        latex=r"\mathcal{L}_{\mathrm{AlphaPO}} = -\log \sigma\bigl(\beta (u_w - u_l) - "
        r"\gamma\bigr), \quad u = \frac{1 - e^{-\alpha A}}{\alpha}",
        paper="Gupta et al. 2025, arXiv 2501.03884",
        trl={"CPOTrainer(loss_type='alphapo')": {}},
    ),
    "sft_token_mean": Objective(
        name="sft_token_mean",
        title="SFT (token-level mean, TRL's)",
        loss_fn=obj.sft_token_mean_loss,
        needs_pairs=False,
        needs_reference=False,
        reduction="tokens",
        hyperparams=(),
        summary="SFT with the NLL averaged over the batch's tokens, as TRL computes it.",
        formula="L = sum_b sum_t m_bt (-logp_bt) / sum_b sum_t m_bt",
        latex=r"\mathcal{L}_{\mathrm{SFT}} = \frac{\sum_b \sum_t m_{bt}\,(-\log \pi_{bt})}"
        r"{\sum_b \sum_t m_{bt}}",
        paper="Maximum likelihood, TRL's SFTTrainer form",
        batchwise=True,
        trl={"SFTTrainer(loss_type='nll')": {}, "DPOTrainer(loss_type='sft')": {}},
    ),
    "kto": Objective(
        name="kto",
        title="KTO",
        loss_fn=unpaired.kto_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature (TRL default 0.1)"),
            _real("desirable_weight", 1.0, obj.POSITIVE, help="w_D: weight of a desirable loss"),
            _real(
                "undesirable_weight", 1.0, obj.POSITIVE, help="w_U: weight of an undesirable loss"
            ),
        ),
        summary="Push each desirable example's reward above a KL reference point and each "
        "undesirable one's below it, with no pairs.",
        formula="L_D = w_D (1 - sigmoid(beta (r - z0))); L_U = w_U (1 - sigmoid(beta (z0 - r))); "
        "r = S - S_ref; z0 = max(0, mean(S_kl - S_ref_kl)) (detached)",
        latex=r"\mathcal{L}_{\mathrm{KTO}} = w_y \bigl(1 - \sigma(\beta\, s_y (r - z_0))\bigr), "
        r"\quad s_D = 1,\ s_U = -1, \quad z_0 = \max\bigl(0, \overline{S_{kl} - "
        r"S^{\mathrm{ref}}_{kl}}\bigr)",
        paper="Ethayarajh et al. 2024, arXiv 2402.01306",
        equation="eq. 7 (as TRL cites it)",
        batchwise=True,
        unpaired=True,
        mismatched=True,
        trl={"KTOTrainer(loss_type='kto')": {}},
    ),
    "bco": Objective(
        name="bco",
        title="BCO (unpaired)",
        loss_fn=unpaired.bco_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _real("delta", 0.0, obj.REAL, help="reward shift (the paper's: a running mean)"),
        ),
        summary="Classify desirable examples as good and undesirable ones as bad by the "
        "reward, with no pairs.",
        formula="L_D = -logsigmoid(beta r - delta); L_U = -logsigmoid(-(beta r - delta)); "
        "r = S - S_ref",
        latex=r"\mathcal{L}_{\mathrm{BCO}} = -\log \sigma\bigl(s_y (\beta r - \delta)\bigr), "
        r"\quad s_D = 1,\ s_U = -1, \quad r = S - S^{\mathrm{ref}}",
        paper="Jung et al. 2024, arXiv 2404.04656",
        unpaired=True,
    ),
    "apo_unpaired": Objective(
        name="apo_unpaired",
        title="APO-zero (unpaired)",
        loss_fn=unpaired.apo_unpaired_loss,
        needs_pairs=True,
        needs_reference=True,
        reduction="sum",
        hyperparams=(
            _real("beta", 0.1, obj.POSITIVE, help="inverse temperature"),
            _real("desirable_weight", 1.0, obj.POSITIVE, help="w_D (TRL's; the paper has none)"),
            _real("undesirable_weight", 1.0, obj.POSITIVE, help="w_U (TRL's)"),
        ),
        summary="Raise each desirable example's reward and lower each undesirable one's, "
        "with no pairs and no reference point.",
        formula="L_D = w_D (1 - sigmoid(beta r)); L_U = w_U sigmoid(beta r); r = S - S_ref",
        latex=r"\mathcal{L}_{\mathrm{APO}} = w_D \bigl(1 - \sigma(\beta r)\bigr) \ (D), \quad "
        r"w_U\, \sigma(\beta r) \ (U), \quad r = S - S^{\mathrm{ref}}",
        paper="D'Oosterlinck et al. 2024, arXiv 2408.06266",
        equation="eq. 7, unpaired (as TRL cites it)",
        unpaired=True,
        trl={"KTOTrainer(loss_type='apo_zero_unpaired')": {}},
    ),
}

OBJECTIVES["rpo"] = mixtures.mixture(
    "rpo",
    {"dpo": 1.0, "sft": mixtures.weight("rpo_alpha", 1.0, "weight of the chosen NLL (TRL's name)")},
    title="RPO (DPO + NLL)",
    summary="DPO plus rpo_alpha times the chosen response's mean token NLL.",
    paper="Pang et al. 2024, arXiv 2404.19733 (the NLL per sequence, divided by its length)",
    among=OBJECTIVES,
)
OBJECTIVES["cpo_nll"] = mixtures.mixture(
    "cpo_nll",
    {"cpo": 1.0, "sft_token_mean": mixtures.weight("cpo_alpha", 1.0, "weight of the NLL term")},
    title="CPO with its NLL term",
    summary="CPO's preference loss plus cpo_alpha times the chosen tokens' NLL, as in the "
    "paper and TRL's default.",
    paper="Xu et al. 2024, arXiv 2401.08417 (the NLL as TRL averages it, over the batch's "
    "chosen tokens)",
    trl={
        "CPOTrainer(loss_type='sigmoid')": {"variant": "sigmoid"},
        "CPOTrainer(loss_type='hinge')": {"variant": "hinge"},
    },
    among=OBJECTIVES,
)
OBJECTIVES["wpo"] = Objective(
    name="wpo",
    title="WPO (weighted DPO)",
    loss_fn=pairwise.wpo_loss,
    needs_pairs=True,
    needs_reference=True,
    reduction="tokens",
    hyperparams=OBJECTIVES["dpo"].hyperparams[:3],  # beta, variant, label_smoothing
    summary="DPO with each pair weighted by how likely the policy is to produce both "
    "responses, as if they were on-policy.",
    formula="L = w(y_w) w(y_l) L_DPO; w(y) = exp(mean_t (logp_t - log sum_v pi(v | x, y_<t)^2))",
    latex=r"\mathcal{L}_{\mathrm{WPO}} = w(y_w)\, w(y_l)\, \mathcal{L}_{\mathrm{DPO}}, \quad "
    r"w(y) = \exp\Bigl(\frac{1}{|y|} \sum_t \log \frac{\pi(y_t \mid x, y_{<t})}"
    r"{\sum_v \pi(v \mid x, y_{<t})^2}\Bigr)",
    paper="Zhou et al. 2024, arXiv 2406.11827",
    equation="eq. 2 (as TRL cites it)",
    needs_sum_sq=True,
    trl={
        "DPOTrainer(loss_type='sigmoid', use_weighting=True)": {
            "variant": "sigmoid",
            "label_smoothing": 0.0,
        },
        "DPOTrainer(loss_type='hinge', use_weighting=True)": {"variant": "hinge"},
    },
)

# -- your own objectives ----------------------------------------------------------------------

BUILTINS = tuple(OBJECTIVES)
"""The objectives lakelab ships; ``register_objective`` adds others beside them."""
ENTRY_POINT_GROUP = "lakelab.objectives"
"""Packages register objectives under this entry-point group: each entry point names an
``Objective`` (``[project.entry-points."lakelab.objectives"] mine = "pkg.mod:OBJECTIVE"``)."""


def register_objective(objective: Objective) -> Objective:
    """Add ``objective`` to the registry, so that it runs wherever a built-in one does: both
    tracks (``LakeConfig(methods=(...))``, ``LMConfig``), sweeps, the app's explorer.

    ``objective.loss_fn`` is called like the built-ins (``lakelab.objectives``): positional
    inputs from ``sequence_inputs`` (A(y) or S(y) per sequence (B,), chosen first, then
    rejected if ``needs_pairs``, then the reference's two if ``needs_reference``; or, for
    ``reduction="tokens"``, per-token log-probs and masks (B, T): chosen and its mask, then
    rejected and its mask, then the reference's two; for a ``mismatched`` objective then the
    mismatched pairs' and the reference's), the non-model-side hyper-parameters as keywords,
    and ``reduction`` ("mean": a scalar loss and float metrics; "none": per-sequence losses
    and metrics). It returns ``(loss, metrics)``.

    A malformed objective raises ValueError naming the field; so does a name already taken.
    Worker processes that are forked (``lakelab lake`` on Linux) see it; spawned ones (the
    sweep's local pool, Ray) only if it is registered on import, e.g. by an entry point of
    group ``lakelab.objectives`` (``load_entry_points``).
    """
    check_objective(objective)
    if objective.name in OBJECTIVES:
        raise ValueError(
            f"name: objective {objective.name!r} is already registered; registered: "
            f"{sorted(OBJECTIVES)} (unregister_objective removes one you registered)"
        )
    OBJECTIVES[objective.name] = objective
    return objective


def mixture(name: str, terms: dict, **facts: Any) -> Objective:
    """``lakelab.mixtures.mixture`` with the terms taken from the registry (the installed
    packages' entry points loaded first): the objective sum_k w_k L_k, to register."""
    for term in terms:
        get_objective(term)  # an unknown name: the registry's error, listing the valid ones
    return mixtures.mixture(name, terms, among=OBJECTIVES, **facts)


def unregister_objective(name: str) -> None:
    """Remove an objective registered with ``register_objective`` (not a built-in one)."""
    if name in BUILTINS:
        raise ValueError(f"{name!r} is built in and cannot be unregistered")
    get_objective(name)
    del OBJECTIVES[name]


def load_entry_points() -> list[str]:
    """Register every objective that installed packages declare under the entry-point group
    ``lakelab.objectives``; returns the names registered. A broken entry point raises
    ValueError naming it."""
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in OBJECTIVES:
            continue
        try:
            objective = entry.load()
        except Exception as err:
            raise ValueError(f"entry point {entry.name!r} ({entry.value}) failed: {err}") from err
        if not isinstance(objective, Objective) or objective.name != entry.name:
            raise ValueError(
                f"entry point {entry.name!r} ({entry.value}) must name an Objective called "
                f"{entry.name!r}, got {objective!r}"
            )
        found.append(register_objective(objective).name)
    return found


def get_objective(name: str) -> Objective:
    """The Objective registered under `name`; ValueError listing the valid names otherwise.
    An unknown name first loads the installed packages' entry points (``load_entry_points``)."""
    if name not in OBJECTIVES:
        load_entry_points()
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def resolve_hparams(name: str, overrides: dict | None = None) -> dict:
    """All hyper-parameters of `name`: defaults, updated by `overrides`, each validated.

    Raises ValueError for an unknown objective, an unknown key, or a value out of range
    (e.g. "dpo: beta must be in (0, inf), got 0.0"). Includes model-side knobs.
    """
    return sequences.resolve(get_objective(name), overrides)


def compute_objective(
    name: str, logps: SequenceLogps, hparams: dict | None = None, *, reduction: str = "mean"
) -> tuple[torch.Tensor, dict]:
    """Reduce `logps` the way objective `name` needs and return its `(loss, metrics)`.

    `hparams` is resolved with `resolve_hparams` (defaults filled in); model-side knobs are
    not passed to the loss. Objectives that need no pairs ignore `rejected`; ValueError if a
    pair-needing objective gets no `rejected`, or a reference-needing one no `ref_*`.
    `reduction="none"` returns per-sequence losses and metrics (``lakelab.objectives``).
    """
    return sequences.evaluate(get_objective(name), logps, hparams, reduction=reduction)


def sequence_inputs(name: str, logps: SequenceLogps) -> list[torch.Tensor]:
    """The positional inputs of objective `name`'s loss function: per-sequence reductions
    (B,) of `logps` (S or A: chosen, rejected, then the reference's), or for a token-level
    objective the per-token log-probs and masks (B, T): chosen and its mask, rejected and
    its mask, the reference's two (as far as the objective needs them), then a mismatched
    objective's pairs. Every entry is row-wise, so the inputs of a subset of rows are the
    same rows of these (used to evaluate many batches of one step at once)."""
    return sequences.inputs_of(get_objective(name), logps)


def loss_on(
    name: str, inputs: list[torch.Tensor], hparams: dict | None = None, *, reduction: str = "mean"
) -> tuple[torch.Tensor, dict]:
    """Objective `name`'s `(loss, metrics)` on `sequence_inputs(name, ...)`; with
    `reduction="none"`, per sequence (see `lakelab.objectives`)."""
    return sequences.loss_of(get_objective(name), inputs, hparams, reduction=reduction)
