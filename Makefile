# make test: a fresh virtual environment with everything the tests need, then the whole suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch first and pinned: this CPU wheel is on disk here; an unpinned torch pulls GBs of CUDA packages.
TORCH  ?= torch==2.13.0

.PHONY: test typecheck demo bench venv clean

$(VENV)/.installed-%: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[$*]"
	touch $@

venv: $(VENV)/.installed-test

# The static check first (mypy, configured in pyproject.toml), then the suite on one torch thread per
# process: the tests use tiny models, and CI has 2 cores, so the suite runs in 2 pytest-xdist workers
# (JOBS=0 to run it in this process). --dist loadfile keeps each test file in one worker, so module-scoped fixtures
# are built once.
JOBS   ?= 2
test: typecheck
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider -n $(JOBS) --dist loadfile tests

typecheck: $(VENV)/.installed-test
	$(PY) -m mypy

demo: $(VENV)/.installed-demo
	$(PY) -m fattr.demo

bench: $(VENV)/.installed-test
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache
