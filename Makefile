# `make demo` sets up and runs the pipeline on a small default; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN    ?= runs/demo

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

demo: setup
	$(PY) 01_generate_data.py doom --total_episodes 200 --logdir $(RUN)

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/bench_generate.py --env doom
	$(PY) bench/bench_doom_resolution.py

clean:
	rm -rf $(RUN)
