# The two commands of the README: `make reproduce` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup reproduce test test-fast bench readme export prepare docs lab

setup: $(STAMP)

# Re-install whenever the pins in settings.ini (read by setup.py) change.
$(STAMP): settings.ini setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# fastbook pins ipywidgets<8, whose widgets do not render in JupyterLab 4 / Notebook 7; notebook 07's canvas needs 8.
	# fastbook itself only imports `ipywidgets.widgets`, which 8 has, so 8 replaces 7 here: pip prints that fastbook
	# asked for <8 ("dependency conflicts"); that line is expected, and the install succeeds.
	$(BIN)/python -m pip install --quiet "ipywidgets>=8.1,<9"
	# the notebooks' kernel, python3, is this environment's own Python (make lab puts it before any other)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mnist-scratch)" > /dev/null
	touch $(STAMP)

reproduce: setup
	$(BIN)/mnist-scratch reproduce $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# While developing: the unit tests only (no notebooks, no browser, no resnet18 training): 12 to 14 s on a 2-core AMD EPYC.
# Without hypothesis's pytest plugin: only the slow test_fuzz.py uses hypothesis, and the plugin costs a second or two.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -p no:hypothesispytest $(PYTEST_ARGS)

# Read and run the series as a reader does: JupyterLab in nbs/, on this .venv's kernel.
lab: setup
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --notebook-dir=nbs $$([ "$$(id -u)" = 0 ] && echo --allow-root)

bench: setup
	$(BIN)/mnist-scratch bench $(ARGS)

# The website, offline, into _site/ (see docs/build.py); preview: python3 -m http.server -d _site, then localhost:8000.
docs: setup
	$(BIN)/python docs/build.py

# README.md is generated from nbs/index.ipynb (nbdev_readme needs Quarto, which cannot be installed offline).
# Its chart, docs/results.png, is the one notebook 90 drew in its committed run (see docs/chart.py).
readme: setup
	$(BIN)/python docs/chart.py
	$(BIN)/jupyter nbconvert --to markdown --stdout --log-level=ERROR nbs/index.ipynb > README.md

# The library from the notebooks: every module is one notebook's own `default_exp`, so a bare nbdev_export is all it takes.
export: $(STAMP)
	$(BIN)/nbdev_export

# Before committing: library from the notebooks, clean notebooks, README from index.ipynb.
prepare: export
	$(BIN)/nbdev_clean
	$(MAKE) readme
