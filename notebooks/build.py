"""Write each notebook's ``.ipynb`` beside its jupytext source, ready for a classroom.

    .venv/bin/python notebooks/build.py          # or: make notebooks
    .venv/bin/python notebooks/build.py --check  # exit 1 if a committed .ipynb is stale

The sources (``NN_*.py``, jupytext percent scripts) are what we edit and review; the
``.ipynb`` files are generated from them, without outputs, with two cells in front:

1. an "Open in Colab" badge, linking to the notebook in the repository of
   ``pyproject.toml``'s ``[project.urls] Repository``;
2. a cell that installs lakelab from that repository when it is not importable (Colab, a
   fresh machine); where lakelab is installed (``make``'s venv) it does nothing.

``tests/test_notebooks.py`` checks that every committed ``.ipynb`` is exactly what this
script writes, and runs the ``.ipynb`` files themselves.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = sorted(HERE.glob("[0-9][0-9]_*.py"))
BRANCH = "main"

INSTALL = """\
# Colab, or any Python without lakelab: install it from its repository (a minute or two).
# Where lakelab is already installed (`make` sets up .venv), this cell does nothing.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("lakelab") is None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "lakelab @ git+{repository}"],
        check=True,
    )"""


def repository() -> str:
    pyproject = tomllib.loads((HERE.parent / "pyproject.toml").read_text())
    return pyproject["project"]["urls"]["Repository"]


def notebook(source: Path) -> nbformat.NotebookNode:
    """The ``.ipynb`` of one source: the badge and install cells, then the source's cells."""
    nb = jupytext.read(source)
    repo = repository()
    github = repo.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{github}/blob/{BRANCH}/notebooks/"
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({colab}{source.stem}.ipynb)"
    )
    install = nbformat.v4.new_code_cell(INSTALL.format(repository=repo))
    badge.metadata, install.metadata = {"tags": ["colab"]}, {"tags": ["colab"]}
    nb.cells = [badge, install, *nb.cells]
    for i, cell in enumerate(nb.cells):  # stable ids: a rebuild changes nothing
        cell["id"] = f"{source.stem[:2]}-{i:03d}"
    nb.metadata.pop("jupytext", None)  # the .ipynb is not paired: the .py is the source
    nb.metadata["colab"] = {"provenance": []}
    return nb


def text(source: Path) -> str:
    return nbformat.writes(notebook(source), version=4) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale .ipynb files")
    args = parser.parse_args()
    stale = []
    for source in SOURCES:
        target = source.with_suffix(".ipynb")
        new = text(source)
        if target.exists() and target.read_text() == new:
            continue
        stale.append(target.name)
        if not args.check:
            target.write_text(new)
    verb = "stale" if args.check else "wrote"
    print(f"{verb}: {', '.join(stale)}" if stale else "every .ipynb is up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
