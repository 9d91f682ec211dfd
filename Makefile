# lakelab: two commands do everything on a fresh machine.
#   make run        reproduce the Frozen Lake figure: results/lake/figure.png (creates .venv)
#   make test       lint + the whole test suite (creates .venv on first use; ~4.5 min on 2 cores)
# and, while working on the code:
#   make test-fast  lint + the tests not marked slow (under 30 s on 2 cores; docs/testing.md)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
OUT    ?= results

.PHONY: run test test-fast lint bench app notebooks clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lakelab needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: on lakelab machines 2.13.0 is the on-disk CPU build; any looser
	# request would pull a multi-GB CUDA build. pyproject's torch range then installs nothing.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,ray,trl]' torch==2.13.0
	@touch $@

run: $(VENV)/.installed
	$(VENV)/bin/lakelab lake --preset paper --out $(OUT)/lake

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# one pytest worker per core, whole files per worker (module fixtures are built once)
test: lint
	$(PY) -m pytest -n auto --dist loadfile

# the same without the tests marked slow (notebooks, browser, Ray, killed and multi-process
# runs, training in the app, anything over ~3 s). Files go out in their alphabetical order, not
# largest first: neighbours (lm_*, the lake track) then share a worker's imports and warm-up.
test-fast: lint
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder -m "not slow"

app: $(VENV)/.installed
	$(VENV)/bin/streamlit run app.py

# each notebooks/NN_*.py (jupytext source) to the .ipynb beside it (tests check they agree)
notebooks: $(VENV)/.installed
	$(PY) notebooks/build.py

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_solver.py
	$(PY) benchmarks/bench_lake.py

clean:
	rm -rf $(VENV) $(OUT)
