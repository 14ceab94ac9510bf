# Two commands on a fresh machine:
#   make demo   -- set everything up and run the main job on the embedded default
#   make test   -- set everything up and run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.bitvert-setup-stamp

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and exactly pinned: the CPU wheel of this version is local.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/bitvert demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/prune_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
