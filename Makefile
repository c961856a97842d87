# The two commands of the README: `make reproduce` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup constraints reproduce test test-fast bench readme export prepare docs lab clean-nbs

setup: $(STAMP)

# Run a command, with a line every 30 s while it runs: pip shows its downloads, then unpacks for minutes without a word.
heartbeat = echo '$(1)'; { $(1) & pid=$$!; n=0; while kill -0 $$pid 2>/dev/null; do sleep 1; n=$$((n+1)); \
	[ $$((n % 30)) -ne 0 ] || ! kill -0 $$pid 2>/dev/null || echo "make setup: pip still at work ($$n s)"; done; wait $$pid; }

# Re-install whenever the requirements (settings.ini, read by setup.py) or the exact versions (constraints.txt) change.
# constraints.txt holds the versions tested together (`make constraints` writes it from a working .venv); the package's
# own requirements are ranges. pip shows what it collects and installs (README: what it costs).
$(STAMP): settings.ini setup.py pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade -c constraints.txt pip
	@echo "make setup: 1/3 PyTorch (on Linux with the CUDA libraries of PyPI's wheel: the largest part)"
	@$(call heartbeat,$(BIN)/python -m pip install -c constraints.txt torch torchvision)
	@echo "make setup: 2/3 the project, fastai, Jupyter and the tools"
	@$(call heartbeat,$(BIN)/python -m pip install -c constraints.txt -e ".[dev]")
	@echo "make setup: 3/3 fastbook, and the notebooks' kernel"
	# fastbook pins ipywidgets<8, whose widgets do not render in JupyterLab 4 / Notebook 7 (notebook 07's canvas needs 8).
	# It only imports `ipywidgets.widgets`, which 8 has, so it comes without its dependencies: those it imports are in
	# the dev requirements, and pip has no conflict to report.
	$(BIN)/python -m pip install -c constraints.txt --no-deps fastbook
	# the notebooks' kernel, python3, is this environment's own Python (make lab puts it before any other). Its display
	# name is its name, as nbdev_clean leaves it in each notebook: else JupyterLab rewrites it there on opening, and every
	# notebook opens marked modified (tests/test_kernel.py)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name python3 > /dev/null
	touch $(STAMP)

# After a deliberate upgrade in .venv: record its exact versions (all but the project itself) for the next `make setup`.
constraints:
	{ echo "# The exact versions \`make setup\` installs (pip -c): written by \`make constraints\` from a working .venv."; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -iv '^mnist.scratch' | LC_ALL=C sort -f; } > constraints.txt

reproduce: setup
	$(BIN)/mnist-scratch reproduce $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# While developing: the unit tests only (no notebooks, no browser, no resnet18 training), in two processes (pytest-xdist, a
# file to each in turn: a file's fixtures are made once; PYTEST_ARGS=-n0 runs one, as --pdb needs). Without the plugins of
# hypothesis (only the slow test_fuzz.py uses it), anyio (no async test) and pytest's log capture (attached to PyTorch's
# 57 loggers around each step of each test).
# PYTHONDONTWRITEBYTECODE empty: pytest keeps the test files it rewrites in __pycache__ (1 s of CPU a run when it cannot).
# TMPDIR in memory where there is one (/dev/shm): the tests make 4,400 folders and delete 4,100 files, 2 s more on this
# machine's disk; pytest keeps the last 3 runs there (76 MB each).
FAST_TMP := $(firstword $(wildcard /dev/shm) $(TMPDIR) /tmp)
test-fast: setup
	TMPDIR=$(FAST_TMP) PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile -p no:hypothesispytest -p no:anyio -p no:logging $(PYTEST_ARGS)

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

# The clean notebooks to practise in, clean/: the story notebooks without prose and outputs (see docs/clean.py).
clean-nbs: $(STAMP)
	$(BIN)/python docs/clean.py

# Before committing: library from the notebooks, clean notebooks, README from index.ipynb.
prepare: export
	$(BIN)/nbdev_clean
	$(MAKE) clean-nbs readme
