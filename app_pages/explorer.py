"""Objective explorer: each objective's loss and gradients as functions of the chosen and
rejected likelihoods, treated as free variables (``lakelab.analysis``).

This makes the ASFT paper's gradient claim visible: under gradient flow on probabilities
(the papers' field) DPO lowers a less likely rejected response faster than it raises the
chosen one, while ASFT's absolute likelihood terms keep the chosen side moving. Switch to the
flow on log-probs to see how much of the claim is the choice of flow. The formulas shown are
the registry's (``lakelab.registry.Objective.latex``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from app_pages.common import hparam_inputs, init, png, show_error, single_threaded_torch
from lakelab.analysis import gradient_field, sequence_gradients
from lakelab.registry import OBJECTIVES, resolve_hparams

FLOWS = {
    "prob": "on probabilities, dp/dt = -dL/dp (the papers' field)",
    "logp": "on log-probabilities, dp/dt = -p dL/dlog p",
}
SPEED = {"prob": "prob_rate", "logp": "rate"}  # key prefix in lakelab.analysis' output
GRID = np.linspace(0.02, 0.98, 21)  # probabilities on both axes


@st.cache_data(show_spinner=False, max_entries=256)
def at_point(name: str, hparams: dict, logps: tuple[float, float, float, float]) -> dict:
    c, r, ref_c, ref_r = logps
    g = sequence_gradients(
        name, c, r, ref_chosen_logp=ref_c, ref_rejected_logp=ref_r, hparams=hparams
    )
    return {k: float(v) for k, v in g.items()}


@st.cache_data(show_spinner=False, max_entries=128)
def field_picture(name: str, hparams: dict, flow: str, ref_c: float, ref_r: float) -> bytes:
    """Left: the loss over (p_chosen, p_rejected) with the flow's direction; right: how much
    faster the rejected likelihood moves than the chosen one (log10 of the speed ratio)."""
    f = gradient_field(
        name,
        np.log(GRID),
        np.log(GRID),
        ref_chosen_logp=ref_c,
        ref_rejected_logp=ref_r,
        hparams=hparams,
    )
    u, v = f[f"{SPEED[flow]}_chosen"], f[f"{SPEED[flow]}_rejected"]
    norm = np.hypot(u, v)
    norm[norm == 0] = 1.0
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2)
    extent = (GRID[0], GRID[-1], GRID[0], GRID[-1])
    image = left.imshow(f["loss"], origin="lower", extent=extent, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=left, label="loss")
    step = 2  # every other grid point, so the arrows stay readable
    left.quiver(
        f["p_chosen"][::step, ::step],
        f["p_rejected"][::step, ::step],
        (u / norm)[::step, ::step],
        (v / norm)[::step, ::step],
        color="white",
        angles="xy",
    )
    left.set_title(f"{OBJECTIVES[name].title}: loss; arrows = direction of the flow", fontsize=9)
    with np.errstate(divide="ignore"):
        ratio = np.log10(np.abs(v) / np.abs(u))
    if np.isfinite(ratio).any():
        bound = max(float(np.nanmax(np.abs(ratio[np.isfinite(ratio)]))), 1e-3)
        ratio = np.where(np.isfinite(ratio), ratio, np.nan)
        image = right.imshow(
            ratio,
            origin="lower",
            extent=extent,
            cmap="RdBu_r",
            norm=TwoSlopeNorm(0.0, -bound, bound),
            aspect="auto",
        )
        fig.colorbar(image, ax=right, label="log10 |dp_rejected/dt| / |dp_chosen/dt|")
        right.contour(f["p_chosen"], f["p_rejected"], ratio, levels=[0.0], colors="black")
        right.set_title("red: the rejected side moves faster", fontsize=9)
    else:
        right.text(
            0.5,
            0.5,
            "no rejected term:\nthe rejected likelihood\ndoes not move",
            ha="center",
            va="center",
            transform=right.transAxes,
        )
    for ax in (left, right):
        ax.set_xlabel("p_chosen = exp(logp_chosen)")
        ax.set_ylabel("p_rejected")
    # fixed margins, not tight_layout (speed: docs/benchmarks.md)
    fig.subplots_adjust(left=0.06, right=0.95, bottom=0.12, top=0.92, wspace=0.3)
    return png(fig, dpi=80)


single_threaded_torch()
st.title("Objective explorer")
st.caption(
    "Each objective's loss as a function of the chosen and rejected log-likelihoods, and where "
    "its gradient pushes them. Summed log-probs S(y) for DPO, mean log-probs A(y) for the "
    "others; IFT is shown on a one-token response, where it equals SFT. The ASFT paper's "
    "claim: under DPO the rejected likelihood falls faster than the chosen one rises wherever "
    "p_rejected < p_chosen (red below the diagonal, on the right), while an absolute "
    "likelihood term per response (ASFT) keeps the chosen side moving faster (blue)."
)
with st.sidebar:
    names = st.multiselect(
        "Objectives to plot",
        list(OBJECTIVES),
        key=init("obj_names", ["dpo", "asft"]),
        format_func=lambda m: OBJECTIVES[m].title,
    )
    flow = st.radio(
        "Gradient flow", list(FLOWS), key=init("obj_flow", "prob"), format_func=FLOWS.get
    )
    p_chosen = st.slider("p_chosen at the probe point", 0.01, 0.99, key=init("obj_p_chosen", 0.6))
    p_rejected = st.slider("p_rejected", 0.01, 0.99, key=init("obj_p_rejected", 0.3))
    st.caption("Reference model (DPO, IPO)")
    ref_chosen = st.slider("p_ref_chosen", 0.01, 1.0, key=init("obj_ref_chosen", 0.5))
    ref_rejected = st.slider("p_ref_rejected", 0.01, 1.0, key=init("obj_ref_rejected", 0.5))
    st.header("Hyper-parameters")
    hparams = {}
    for name, objective in OBJECTIVES.items():
        if objective.hyperparams:
            with st.expander(objective.title):
                hparams[name] = hparam_inputs(name, "obj")

logps = tuple(math.log(p) for p in (p_chosen, p_rejected, ref_chosen, ref_rejected))
valid = {}
for name in OBJECTIVES:
    try:
        resolve_hparams(name, hparams.get(name))
        valid[name] = hparams.get(name, {})
    except ValueError as err:
        show_error(err)

st.subheader("Every objective at the probe point")
rows = []
for name, hp in valid.items():
    g = at_point(name, hp, logps)
    rows.append(
        {
            "objective": name,
            "loss": g["loss"],
            "dL/dlogp_chosen": g["dL/dlogp_chosen"],
            "dL/dlogp_rejected": g["dL/dlogp_rejected"],
            "dp_chosen/dt": g[f"{SPEED[flow]}_chosen"],
            "dp_rejected/dt": g[f"{SPEED[flow]}_rejected"],
            "|rejected| / |chosen|": g[f"{SPEED[flow]}_ratio"],
        }
    )
st.dataframe(pd.DataFrame(rows).set_index("objective"))
st.caption(
    f"Speeds under the flow {FLOWS[flow]}. For DPO dL/dlogp_rejected = -dL/dlogp_chosen: the "
    "log-probs move at equal and opposite speeds, so on probabilities the ratio is "
    "p_chosen / p_rejected and on log-probs its inverse. A network follows neither flow "
    "exactly (its parameters, not the likelihoods, follow the gradient)."
)

for name in names:
    objective = OBJECTIVES[name]
    st.subheader(objective.title)
    st.latex(objective.latex)
    st.caption(f"{objective.summary} ({objective.citation})")
    if name in valid:
        st.image(field_picture(name, valid[name], flow, *logps[2:]))
