# Two entry points for a newcomer; each installs what it needs into .venv first.
#   make gates  -> run the gate chain on the embedded synthetic data (standard profile)
#   make test   -> unit tests + the smoke gate chain (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: install gates test clean

$(BIN)/moola: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build; an unpinned torch downloads several GB of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(BIN)/moola

install: $(BIN)/moola

gates: install
	$(BIN)/moola data synth --out data/synthetic --if-missing
	$(BIN)/pytest gates_tests -x --profile standard --data data/synthetic

# -n auto --dist loadfile: one test module per worker (module fixtures are built once); the
# tests mostly run gate sessions in subprocesses on one torch thread each, so on 2 cores two
# workers take 0.7x the time of one (measured: 370 s vs 558 s)
test: install
	$(BIN)/pytest moola/tests gates_tests --profile smoke -n auto --dist loadfile

clean:
	rm -rf $(VENV) .numba-cache .moola-cache reports/*
