"""Lake page: a preset, a seeded random lake or a typed map, solved exactly.

Left: the optimal values V* as a heatmap and the greedy optimal policy as arrows (value
iteration). Right: the soft optimum pi*(a|s) = exp((Q - V) / tau) at the chosen temperature
(soft value iteration), the policy the Frozen Lake experiment fits theta* to.
"""

from __future__ import annotations

import math

import streamlit as st
from matplotlib.figure import Figure

from app_pages.common import init, png, show_error
from lakelab.lakes import PRESETS, Lake, make_lake, random_lake
from lakelab.plotting import draw_lake
from lakelab.solver import soft_value_iteration, success_probability, value_iteration

TAUS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
EXAMPLE_MAP = "SFFF\nFHFH\nFFFH\nHFFG"


@st.cache_resource(show_spinner=False, max_entries=64)
def load_lake(desc: str, slippery: bool, success_rate: float) -> Lake:
    """``desc`` as ``make_lake`` reads it: a preset name, or rows split by '/' or newlines."""
    return make_lake(desc, slippery=slippery, success_rate=success_rate)


@st.cache_data(show_spinner=False, max_entries=64)
def random_map(size: int, p_frozen: float, seed: int) -> str:
    return "/".join(random_lake(size, p_frozen=p_frozen, seed=seed).desc)


@st.cache_data(show_spinner=False, max_entries=256)
def solve(desc: str, slippery: bool, success_rate: float, gamma: float, tau: float | None):
    """V [S], policy [S, A] and its success probability: hard optimum (tau None) or soft."""
    lake = load_lake(desc, slippery, success_rate)
    if tau is None:
        sol = value_iteration(lake, gamma=gamma)
    else:
        sol = soft_value_iteration(lake, tau=tau, gamma=gamma)
    return sol.V, sol.policy, success_probability(lake, sol.policy)


@st.cache_data(show_spinner=False, max_entries=256)
def picture(desc: str, slippery: bool, success_rate: float, gamma: float, tau: float | None):
    lake = load_lake(desc, slippery, success_rate)
    V, policy, _ = solve(desc, slippery, success_rate, gamma, tau)
    cell = min(0.9, 10 / max(lake.nrow, lake.ncol))  # inches; large maps shrink to fit
    fig = Figure(figsize=(cell * lake.ncol + 2.0, cell * lake.nrow + 1.0))
    kind = "optimum (value iteration)" if tau is None else f"soft optimum, tau = {tau:g}"
    draw_lake(
        lake,
        values=V,
        policy=policy,
        ax=fig.subplots(),
        title=f"{kind}, gamma = {gamma:g}",
        annotate=max(lake.nrow, lake.ncol) <= 12,
    )
    fig.tight_layout()
    return png(fig)


st.title("Frozen Lake, solved exactly")
with st.sidebar:
    source = st.radio(
        "Lake", ["preset", "random", "custom"], key=init("lake_source", "preset"), horizontal=True
    )
    if source == "preset":
        desc = st.selectbox("Preset", sorted(PRESETS), key=init("lake_preset", "4x4"))
    elif source == "random":
        size = st.slider("Size (rows = columns)", 2, 16, key=init("lake_size", 6))
        p_frozen = st.slider(
            "Share of frozen cells", 0.05, 1.0, step=0.05, key=init("lake_p_frozen", 0.8)
        )
        seed = st.number_input("Seed", min_value=0, step=1, key=init("lake_seed", 0))
    else:
        desc = st.text_area(
            "Map: one row per line (or '/' between rows)",
            key=init("lake_map", EXAMPLE_MAP),
            help="S start, F frozen, H hole, G goal; exactly one S, at least one reachable G",
        )
    slippery = st.checkbox("Slippery", key=init("lake_slippery", False))
    success_rate = st.slider(
        "Success rate (intended move)",
        0.05,
        1.0,
        step=0.01,
        key=init("lake_success_rate", 1 / 3),
        disabled=not slippery,
        help="on a slippery lake; each perpendicular move gets (1 - success rate) / 2",
    )
    gamma = st.slider("gamma (discount)", 0.5, 1.0, step=0.01, key=init("lake_gamma", 0.95))
    tau = st.select_slider(
        "tau (temperature of the soft optimum)",
        TAUS,
        key=init("lake_tau", 0.02),
        help="soft value iteration: V = tau logsumexp(Q / tau), pi* = exp((Q - V) / tau)",
    )

if not slippery:
    success_rate = 1 / 3  # unused; one cache entry per deterministic lake
try:
    if source == "random":
        desc = random_map(size, p_frozen, int(seed))
    lake = load_lake(desc, slippery, success_rate)
    V, _, p_success = solve(desc, slippery, success_rate, gamma, None)
except ValueError as err:
    show_error(err)
    st.stop()

cols = st.columns(4)
cols[0].metric("V*(start)", f"{V[lake.start]:.4f}")
cols[1].metric("Success probability, optimal policy", f"{p_success:.4f}")
left, right = st.columns(2)
left.image(picture(desc, slippery, success_rate, gamma, None))
try:
    V_soft, _, p_soft = solve(desc, slippery, success_rate, gamma, tau)
except ValueError as err:
    with right:
        show_error(err)
else:
    cols[2].metric(f"Soft V(start), tau = {tau:g}", f"{V_soft[lake.start]:.4f}")
    cols[3].metric("Success probability, soft optimum", f"{p_soft:.4f}")
    right.image(picture(desc, slippery, success_rate, gamma, tau))
    bonus = tau * math.log(4) / (1 - gamma)
    if bonus >= 1:
        right.warning(
            f"tau log 4 / (1 - gamma) = {bonus:.2f} >= 1: the entropy bonus for staying alive "
            "outweighs the goal's reward of 1, so the soft optimum may wander instead of finishing."
        )
st.caption(
    f"{lake.nrow}x{lake.ncol} lake, {'slippery' if slippery else 'deterministic'}. Cells show "
    "V; arrows have length proportional to each action's probability. The map, for the "
    f"custom box or `lakelab solve --lake`: `{'/'.join(lake.desc)}`"
)
