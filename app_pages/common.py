"""What the app's pages share: widget state that survives page switches, hyper-parameter
widgets generated from the registry, lakelab's errors shown in place, figures as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import streamlit as st
from matplotlib.figure import Figure

PAGE_PREFIXES = ("lake_", "exp_", "obj_", "lm_")
"""Widget keys of each page start with its prefix. Buttons must not (Streamlit forbids
setting a button's state), so they are named ``run_*`` / ``download_*``."""


def keep_widget_state() -> None:
    """Re-claim every page's widget values before the page runs.

    Streamlit forgets the value of a widget that was not drawn in a run, so without this a
    visit to another page would reset a page's settings. Writing a value back through
    ``st.session_state`` makes Streamlit keep it; ``app.py`` calls this on every run.
    """
    for key in list(st.session_state):
        if isinstance(key, str) and key.startswith(PAGE_PREFIXES):
            st.session_state[key] = st.session_state[key]


def init(key: str, default: Any) -> str:
    """``key``, with ``default`` placed in session state the first time.

    Widgets then get their starting value from session state and no ``value=`` argument:
    giving both would make Streamlit warn on every run once ``keep_widget_state`` writes.
    """
    if key not in st.session_state:
        st.session_state[key] = default
    return key


def show_error(err: Exception) -> None:
    """The error's own message (lakelab's ``ValueError`` names the bad value and what is
    allowed), in place; the rest of the app keeps working."""
    st.error(str(err), icon=":material/error:")


def method_entry(name: str):
    """The registry entry of a preference objective or of an RL method (``lakelab.rl_methods``)."""
    from lakelab.registry import get_objective  # imports torch: only pages that need it pay
    from lakelab.rl_methods import RL_METHODS

    return RL_METHODS[name] if name in RL_METHODS else get_objective(name)


def hparam_inputs(objective: str, prefix: str) -> dict[str, Any]:
    """One widget per hyper-parameter of ``objective``, from its ``HyperParam`` spec.

    The label shows the allowed interval and the help its one-line explanation. Numbers are
    not clamped by the widget: lakelab validates them, and a value out of range gives its
    error (``show_error``). Returns the values that differ from the registry's defaults,
    the form ``LakeConfig.hparams`` and ``resolve_hparams`` take.
    """
    changed = {}
    for hp in method_entry(objective).hyperparams:
        default = hp.default if hp.choices is not None else float(hp.default)
        key = init(f"{prefix}_hp_{objective}_{hp.name}", default)
        help_text = hp.help + (" (used by the training loop)" if hp.model_side else "")
        if hp.choices is not None:
            value = st.selectbox(hp.name, hp.choices, key=key, help=help_text)
        else:
            step = 0.01 if hp.high is not None and hp.high <= 1 else 0.05
            value = st.number_input(
                f"{hp.name} in {hp.interval}", step=step, format="%g", key=key, help=help_text
            )
        if value != hp.default:
            changed[hp.name] = value
    return changed


def single_threaded_torch() -> None:
    """One torch thread for the pages that train or differentiate.

    The app's tensors are tiny (an MLP over a few dozen states), so a second thread brings
    nothing (speed: ``docs/benchmarks.md``).
    """
    import torch

    torch.set_num_threads(1)


def png(fig: Figure, dpi: int = 100) -> bytes:
    """A figure as PNG bytes: cached functions return these, so a re-run draws nothing."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
