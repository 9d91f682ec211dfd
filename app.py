"""lakelab in the browser: `streamlit run app.py` (or `make app`).

Thin on purpose: every computation is a lakelab call, cached. This first page explores lakes
and their exact optimal and soft-optimal policies; the experiment, objective explorer and LM
pages arrive with their issues.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import streamlit as st

from lakelab.lakes import PRESETS, Lake, make_lake
from lakelab.plotting import draw_lake
from lakelab.solver import (
    soft_value_iteration,
    success_probability,
    value_iteration,
)


@st.cache_resource(show_spinner=False)
def load_lake(desc: tuple[str, ...], slippery: bool, success_rate: float) -> Lake:
    return make_lake(list(desc), slippery=slippery, success_rate=success_rate)


@st.cache_data(show_spinner=False)
def solve(desc: tuple[str, ...], slippery: bool, success_rate: float, gamma: float, tau: float):
    lake = load_lake(desc, slippery, success_rate)
    if tau > 0:
        sol = soft_value_iteration(lake, tau=tau, gamma=min(gamma, 0.999))
    else:
        sol = value_iteration(lake, gamma=gamma)
    return sol.V, sol.policy, success_probability(lake, sol.policy)


st.set_page_config(page_title="lakelab", layout="wide")
st.title("lakelab: Frozen Lake, solved exactly")

with st.sidebar:
    source = st.radio("Lake", ["preset", "custom"], key="source", horizontal=True)
    if source == "preset":
        name = st.selectbox("Preset", sorted(PRESETS), index=0, key="preset")
        rows = PRESETS[name]
    else:
        text = st.text_area("Map (one row per line: S F H G)", "SFFF\nFHFH\nFFFH\nHFFG", key="map")
        rows = tuple(r.strip() for r in text.strip().splitlines())
    slippery = st.checkbox("Slippery", value=False, key="slippery")
    success_rate = st.slider(
        "Success rate", 0.05, 1.0, 1 / 3, 0.01, key="success_rate", disabled=not slippery
    )
    gamma = st.slider("gamma (discount)", 0.5, 1.0, 0.95, 0.01, key="gamma")
    tau = st.slider(
        "tau (0 = hard optimum)",
        0.0,
        0.2,
        0.0,
        0.005,
        key="tau",
        help="soft value iteration: pi*(a|s) = exp((Q - V) / tau); needs gamma < 1",
    )

try:
    V, policy, p_success = solve(tuple(rows), slippery, success_rate, gamma, tau)
except ValueError as err:
    st.error(f"lakelab says: {err}")
    st.stop()

lake = load_lake(tuple(rows), slippery, success_rate)
left, right = st.columns([2, 1])
with right:
    st.metric("V*(start)", f"{V[lake.start]:.4f}")
    st.metric("Success probability of this policy", f"{p_success:.4f}")
    st.caption(
        "Values by value iteration (tau = 0) or soft value iteration; arrows have "
        "length proportional to each action's probability."
    )
with left:
    fig, ax = plt.subplots(figsize=(0.9 * lake.ncol + 2, 0.9 * lake.nrow + 1))
    kind = "hard optimum" if tau == 0 else f"soft optimum, tau={tau:g}"
    draw_lake(lake, values=V, policy=policy, ax=ax, title=f"{kind}, gamma={gamma:g}")
    st.pyplot(fig)
    plt.close(fig)
