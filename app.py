"""lakelab in the browser: `streamlit run app.py` (or `make app`).

Thin on purpose: this file only lists the pages; each page (``app_pages/``) draws
widgets and calls lakelab, caching every heavy result, and shows lakelab's own message for
bad input. Pages:

- Lake: presets, seeded random lakes or a typed map; optimal values, policy, soft optimum.
- Experiment: the Frozen Lake alignment experiment (``lakelab.mlp.runs.run_lake``), resumable.
- Objective explorer: each objective's loss and gradients over chosen/rejected log-probs.
- LM: a run of the tiny-transformer track (``lakelab lm``), and the plans its models write
  for a lake you type, executed in the real env.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are drawn to PNG bytes, in Streamlit's worker threads

import streamlit as st

from app_pages.common import keep_widget_state

PAGES_DIR = "app_pages"
PAGES = [
    st.Page(f"{PAGES_DIR}/lake.py", title="Lake", icon=":material/grid_on:", default=True),
    st.Page(f"{PAGES_DIR}/experiment.py", title="Experiment", icon=":material/science:"),
    st.Page(f"{PAGES_DIR}/explorer.py", title="Objective explorer", icon=":material/function:"),
    st.Page(f"{PAGES_DIR}/lm.py", title="LM", icon=":material/smart_toy:"),
]

st.set_page_config(page_title="lakelab", layout="wide")
keep_widget_state()
st.navigation(PAGES).run()
