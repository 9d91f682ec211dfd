"""The classroom notebooks run top to bottom, and their exercise checks can fail.

Notebooks are stored as jupytext "percent" scripts (``notebooks/*.py``). Each test converts one
in memory and executes it headless with nbclient, in the venv's ``python3`` kernel, in a
temporary working directory, with matplotlib's Agg backend.

An exercise is three tagged cells in this order: ``exercise`` (the student's cell, holding a
placeholder answer), ``solution`` (source hidden) and ``check`` (asserts against lakelab or a
closed form). Tests (the two that start a kernel are marked ``slow``: ``make test-fast`` leaves
them out):

- ``test_notebook_structure``: no kernel; learning goals, exercise triples, hidden solutions,
  public lakelab names only, and the file is what jupytext itself would write.
- ``test_committed_ipynb_is_the_built_one``: the ``.ipynb`` beside each source is exactly what
  ``notebooks/build.py`` writes (a Colab badge, an install cell, then the source's cells).
- ``test_notebook_runs``: the ``.ipynb``, with the solutions: every cell succeeds. Then, in the
  same kernel, each exercise cell is run again (restoring its placeholder answer) followed by
  its check, which must raise ``AssertionError``: the checks really check.
- ``test_checks_fail_without_solutions``: the notebook with its solution cells removed, top to
  bottom: exactly the check cells fail, each with ``AssertionError`` (so a student who has not
  solved an exercise can still run the rest, and no check leans on a name only the solution
  defines). Skipped for the notebooks in ``SLOW``, which would train everything a second time;
  the replay in ``test_notebook_runs`` covers their checks.
"""

from __future__ import annotations

import importlib.util
import json
import re
from contextlib import contextmanager
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))  # build.py makes their .ipynb
SLOW = {"03_reproducing_ift_frozen_lake", "04_tiny_lm_alignment"}  # ~1 min of training each
CELL_TIMEOUT = 600  # seconds per cell; the whole-notebook limit is the pytest timeout below
NOTEBOOK_TIMEOUT = 900


def tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def indices(nb, tag: str) -> list[int]:
    return [i for i, cell in enumerate(nb.cells) if tag in tags(cell)]


@contextmanager
def kernel(nb, cwd: Path, monkeypatch):
    """A started kernel for ``nb``: yields a function that runs one cell and returns the
    exception name it raised, or None."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )

    def run(index: int) -> str | None:
        try:
            client.execute_cell(nb.cells[index], index)
        except CellExecutionError as err:
            return err.ename
        return None

    with client.setup_kernel():
        yield run


def body(text: str) -> str:
    """A percent script without its YAML header (between the first two ``# ---`` lines)."""
    head, sep, rest = text.partition("\n# ---\n")
    assert head.startswith("# ---") and sep, "the notebook starts with jupytext's header"
    return rest


def error_report(nb, failures: dict[int, str]) -> str:
    lines = []
    for i, ename in failures.items():
        source = nb.cells[i].source.strip().splitlines()
        lines.append(f"cell {i} raised {ename}: {source[0] if source else ''!r}")
        for out in nb.cells[i].get("outputs", []):
            if out.get("output_type") == "error":
                lines.append(f"    {out['ename']}: {out['evalue']}")
    return "\n".join(lines)


def built(path: Path) -> str:
    """What ``notebooks/build.py`` writes for the source ``path``."""
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.text(path)


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS
    assert {p.stem for p in NOTEBOOKS} >= SLOW


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path: Path):
    text = path.read_text()
    nb = jupytext.reads(text, fmt="py:percent")
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "Learning goals" in first.source

    exercises, solutions, checks = (indices(nb, t) for t in ("exercise", "solution", "check"))
    assert exercises, "every notebook has at least one exercise"
    assert len(exercises) == len(solutions) == len(checks)
    for e, s, c in zip(exercises, solutions, checks, strict=True):
        assert e < s < c, f"exercise {e}, solution {s}, check {c} are out of order"
        assert not any(i in exercises or i in checks for i in range(e + 1, c) if i != s)
        assert nb.cells[s].metadata.get("jupyter", {}).get("source_hidden") is True
        assert re.search(r"^\s*assert ", nb.cells[c].source, re.M), f"check cell {c} asserts"

    # public API only: no private lakelab names imported or reached into
    assert not re.search(r"from lakelab[\w.]* import[^\n]*\b_\w", text)
    assert not re.search(r"\blakelab(\.\w+)*\._", text)

    # stored as jupytext writes it, so opening and saving in Jupyter changes no cell (the
    # header may gain jupytext's version stamp)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert body(jupytext.writes(nb, fmt="py:percent")) == body(text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_ipynb_is_the_built_one(path: Path):
    """Each source has its .ipynb beside it, exactly as notebooks/build.py writes it (rerun
    ``make notebooks`` after editing a source): a Colab badge, an install cell, the cells."""
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run make notebooks"
    assert ipynb.read_text() == built(path), f"{ipynb.name} is stale: run make notebooks"
    cells = json.loads(ipynb.read_text())["cells"]
    badge, install = "".join(cells[0]["source"]), "".join(cells[1]["source"])
    assert "colab.research.google.com/assets/colab-badge.svg" in badge
    assert badge.endswith(f"/blob/main/notebooks/{ipynb.name})")
    assert 'if importlib.util.find_spec("lakelab") is None:' in install
    assert "Learning goals" in "".join(cells[2]["source"])
    assert all(not cell.get("outputs") for cell in cells)  # no outputs are committed
    assert len(cells) == len(jupytext.read(path).cells) + 2


@pytest.mark.slow
@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch):
    """The committed .ipynb, install cell included (with lakelab installed it does nothing)."""
    nb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    exercises, checks = indices(nb, "exercise"), indices(nb, "check")
    with kernel(nb, tmp_path, monkeypatch) as run:
        for i in range(len(nb.cells)):
            failed = run(i)
            assert failed is None, error_report(nb, {i: failed})
        # replay: the placeholder answer of each exercise must fail its check
        for e, c in zip(exercises, checks, strict=True):
            assert run(e) is None, error_report(nb, {e: "an error"})
            assert run(c) == "AssertionError", (
                f"check cell {c} did not reject the placeholder answer of exercise cell {e}"
            )
    nbformat.validate(nb)


@pytest.mark.slow
@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize(
    "path",
    [
        p if p.stem not in SLOW else pytest.param(p, marks=pytest.mark.skip("trains for ~1 min"))
        for p in NOTEBOOKS
    ],
    ids=lambda p: p.stem,
)
def test_checks_fail_without_solutions(path: Path, tmp_path: Path, monkeypatch):
    nb = jupytext.read(path)
    nb.cells = [cell for cell in nb.cells if "solution" not in tags(cell)]
    checks = indices(nb, "check")
    with kernel(nb, tmp_path, monkeypatch) as run:
        failures = {i: ename for i in range(len(nb.cells)) if (ename := run(i)) is not None}
    expected = dict.fromkeys(checks, "AssertionError")
    assert failures == expected, (
        f"expected exactly the check cells to fail, {expected}; got {failures}\n"
        + error_report(nb, failures)
    )
