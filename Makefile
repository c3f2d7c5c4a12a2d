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

# The six stages on Doom with small flags (about 10 minutes on 2 cores); paper-scale flags are in README.
demo: setup
	$(PY) 01_generate_data.py doom --total_episodes 300 --policy sticky_mixed --logdir $(RUN)
	$(PY) 02_train_vae.py --logdir $(RUN) --epochs 1 --max_frames 40000 --lr 0.001
	$(PY) 03_generate_rnn_data.py --logdir $(RUN)
	$(PY) 04_train_mdnrnn.py --logdir $(RUN) --epochs 10 --seq_len 100 --batch_size 16
	$(PY) 05_train_controller.py --logdir $(RUN) --mode dream --pop_size 32 --num_rollouts 8 \
		--max_generations 10 --eval_every 5 --eval_episodes 256
	$(PY) 06_test_controller.py --logdir $(RUN) --episodes 100 --no_progress | tail -n 1
	$(PY) 06_test_controller.py --logdir $(RUN) --episodes 100 --random --no_progress | tail -n 1

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/bench_generate.py --env doom
	$(PY) bench/bench_doom_resolution.py
	$(PY) bench/bench_vae.py
	$(PY) bench/bench_mdnrnn.py
	$(PY) bench/bench_dream.py --generation

clean:
	rm -rf $(RUN)
