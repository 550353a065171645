# Two commands on a fresh machine (README "Set-up"):
#   make repro   -> creates .venv on first use, then `dvc repro` (the whole pipeline)
#   make test    -> creates .venv on first use, then the whole test suite (incl. nbval)
# Everything else here is a convenience around those two.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := bench-suite
# uv, the installer of the venv's packages (an exact pin, like pyproject's); `make venv UV=` installs with pip alone
UV     := uv==0.13.9
# The venv's bin first, so `python`, `papermill` and `dvc` inside stages are the venv's.
# PYTHONDONTWRITEBYTECODE emptied: Python then caches what it compiles on first import (in .venv and the checkout's
# gitignored __pycache__), as it does by default. Some machines and images set it to 1 (this project's own build
# host does); then every process of the pipeline and the tests compiles torch, pandas, sympy... again from source
# (issue 25, measured: `import sympy` 2.0 CPU-s uncached vs 0.4 cached; torch + pandas + bench ~5 CPU-s more per
# process), and `make repro` starts a few dozen such processes (dvc, papermill, each notebook's kernel).
RUN    := PATH="$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" PYTHONDONTWRITEBYTECODE=

.PHONY: venv repro test lab clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# every extra (pipeline, testbed, test, and perf: Stable-Baselines3, so its smoke test runs here and in CI),
	# editable. Installed by uv ($(UV), pinned above) when it can be installed: it downloads and unpacks in parallel
	# (measured, issue 25: 38 s of CPU and ~3 min beside a load of 12-20 where pip took 66 s and ~21 min; torch's
	# CUDA wheels are most of the bytes). Where uv cannot be had or fails (no wheel for the platform, a pip.conf
	# index uv does not read), pip installs the same requirements, as before.
	# No byte-compiling up front (uv's default, pip's --no-compile): Python compiles what is imported, on first import
	# (issue 25, measured on the shared 2-core host in CPU time: compiling the whole venv, 16,366 files, costs 63 CPU-s,
	# ~30 s more of `make venv` on 2 idle cores; compiling everything the whole test suite's collection imports, torch,
	# pandas and bench included, costs 11.5 CPU-s once (collect-only: 21.5 CPU-s cold vs 10.0 warm), and `make repro`
	# has compiled most of it before `make test` starts. So `--compile-bytecode` would make `make repro` ~30 s slower
	# to make `make test` seconds faster: the first `make test`'s extra ~1.5 min over a second one is not mainly bytecode).
	if $(BIN)/python -m pip install --quiet --no-compile --disable-pip-version-check $(UV) \
	    && $(BIN)/python -m uv pip install --python $(BIN)/python -e ".[all]"; then :; else \
	  echo "uv unavailable or failed: installing with pip" >&2; \
	  $(BIN)/python -m pip install --upgrade --disable-pip-version-check pip \
	    && $(BIN)/python -m pip install --no-compile --disable-pip-version-check -e ".[all]"; fi
	# A kernel inside the venv (--sys-prefix), so papermill, nbval and JupyterLab find it without a manual step.
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (bench suite)"
	touch $(STAMP)

repro: $(STAMP)
	$(RUN) dvc repro
	$(RUN) python -m bench readme

# Test files spread over TEST_WORKERS processes (pytest-xdist); --dist loadfile keeps each file, and so each
# notebook's cells, in order on one worker; --no-loadscope-reorder hands the files out in collection order, which
# tests/conftest.py starts with the longest (LONG_FIRST; xdist's default, most tests first, started them last).
# `make test TEST_WORKERS=0` runs everything in this process.
# The `serial` tests (the live testbed's real links and servers) run afterwards on their own: beside another
# worker's load their latencies and crash timeouts are not the ones they check; they live in tests/testbed, the only
# folder the second pass collects (tests/conftest.py SERIAL_DIR refuses a `serial` test elsewhere). The other `live` tests (whole
# pipelines, retrains in subprocesses: long, not timing-sensitive) stay in the parallel pass.
TEST_WORKERS ?= 2
# Hypothesis profile (tests/conftest.py): `ci`, 30 examples per property (30% of a property's own pinned count, at
# least min(count, 10)) and the fuzz suites at a third, like
# a CI service's run, so README's `make test` fits its budget on 2 cores (issue 25: the ten property and fuzz
# files: 85 s of CPU under `dev`, 50 s under `ci`); `make test HYPOTHESIS_PROFILE=dev` runs the developer's 100.
HYPOTHESIS_PROFILE ?= ci

test: $(STAMP)
	$(RUN) HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) python -m pytest -n $(TEST_WORKERS) --dist loadfile \
	    --no-loadscope-reorder --nbval-lax -m "not serial" tests notebooks
	$(RUN) HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) python -m pytest -m serial tests/testbed

lab: $(STAMP)
	$(RUN) jupyter lab notebooks

clean-venv:
	rm -rf $(VENV)
