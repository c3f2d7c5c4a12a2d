# `make demo` sets up and runs the pipeline on a small default; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN    ?= runs/demo
CPU_RUN ?= runs/cpu
PAPER_RUN ?= runs/paper-$(ENV)
ENV ?= doom
BP_RUN ?= runs/binpacking
SEED ?= 0
CAR_RUN ?= runs/carracing-seed$(SEED)
WORKERS ?= $(shell nproc)

.PHONY: setup setup-ray setup-optional demo cpu-recipe carracing binpacking paper test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The optional Ray backend (--backend ray); the tests run it on a local two-node cluster.
setup-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: requirements-ray.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-ray.txt
	touch $@

# Every optional extra (Ray, TensorBoard): what the tests exercise.
setup-optional: $(VENV)/.installed-optional

$(VENV)/.installed-optional: requirements-optional.txt requirements-ray.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-optional.txt
	touch $@

# The six stages on Doom with small flags (about 10 minutes on 2 cores); paper-scale flags are in README.
demo: setup
	$(PY) 01_generate_data.py doom --total_episodes 300 --policy sticky_mixed --logdir $(RUN)
	$(PY) 02_train_vae.py --logdir $(RUN) --epochs 1 --max_frames 40000 --lr 0.001
	$(PY) 03_generate_rnn_data.py --logdir $(RUN)
	$(PY) 04_train_mdnrnn.py --logdir $(RUN) --epochs 10 --seq_len 100 --batch_size 16
	$(PY) 05_train_controller.py --logdir $(RUN) --mode dream --pop_size 32 --num_rollouts 8 \
		--max_generations 10 --eval_every 5 --eval_episodes 256
	$(PY) 06_test_controller.py --logdir $(RUN) --episodes 100 --random --no_progress | tail -n 2
	$(PY) 06_test_controller.py --logdir $(RUN) --episodes 100 --no_progress | tail -n 2

# Doom on a 2-core CPU in about 30 minutes: 1,000 episodes, V on 200k frames, M 30 epochs, C 30 generations
# (docs/notebook.md E1). Scores the controller and the random policy on the same 100 real seeds.
cpu-recipe: setup
	$(PY) 01_generate_data.py doom --total_episodes 1000 --policy sticky_mixed --logdir $(CPU_RUN)
	$(PY) 02_train_vae.py --logdir $(CPU_RUN) --epochs 1 --max_frames 200000 --lr 0.001
	$(PY) 03_generate_rnn_data.py --logdir $(CPU_RUN)
	$(PY) 04_train_mdnrnn.py --logdir $(CPU_RUN) --epochs 30 --batch_size 16
	$(PY) analyze.py calibration --logdir $(CPU_RUN) --no_controller --no_progress
	$(PY) 05_train_controller.py --logdir $(CPU_RUN) --mode dream --pop_size 32 --num_rollouts 16 \
		--max_generations 30 --eval_every 10 --eval_episodes 256
	$(PY) 06_test_controller.py --logdir $(CPU_RUN) --episodes 100 --random --no_progress | tail -n 2
	$(PY) 06_test_controller.py --logdir $(CPU_RUN) --episodes 100 --no_progress | tail -n 2

# CarRacing on a 2-core machine (README "CarRacing"): 400 brownian episodes, V, M, CMA-ES in the real game
# (training episodes cut after 20 steps without a new tile), then the controller and the random policy on
# test seeds 0-99 with the Welch line. Each stage's time goes to $(CAR_RUN)/timings.csv; rerun to continue.
# SEED=1 changes every training seed (data, V, M, C).
carracing: setup
	$(PY) run_all.py --env carracing --preset cpu --seed $(SEED) --logdir $(CAR_RUN) --device cpu

# Bin packing (README "Bin packing"): the real-trained controller, ~65 min on 2 cores; then the baselines
# on the same seeds, each printing the Welch line against the controller.
binpacking: setup
	$(PY) 01_generate_data.py binpacking --total_episodes 300 --logdir $(BP_RUN)
	$(PY) 02_train_vae.py --logdir $(BP_RUN) --epochs 3 --max_frames 200000 --lr 0.001 --kl_tolerance 2.0
	$(PY) 03_generate_rnn_data.py --logdir $(BP_RUN)
	$(PY) 04_train_mdnrnn.py --logdir $(BP_RUN) --epochs 20 --batch_size 16
	$(PY) 05_train_controller.py --logdir $(BP_RUN) --mode real --pop_size 16 --num_rollouts 2 \
		--max_generations 60 --eval_every 10 --eval_episodes 20
	$(PY) 06_test_controller.py --logdir $(BP_RUN) --episodes 200 --no_progress | tail -n 1
	for p in best_fit sum_of_squares random_valid; do \
		$(PY) 06_test_controller.py --logdir $(BP_RUN) --episodes 200 --random --random_policy $$p --no_progress \
		| tail -n 2; done

# The paper's scale in one command (run_all.py, preset "paper"; for a GPU box with 16+ cores): the six
# stages with the reference recipe (10,000 episodes, V 10 epochs, M 400 epochs for Doom, C pop 64 x 16 for
# 200 generations), --device auto, each stage's time in $(PAPER_RUN)/timings.csv; rerun to continue.
paper: setup
	$(PY) run_all.py --env $(ENV) --preset paper --logdir $(PAPER_RUN) --device auto

test: setup setup-optional
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup setup-ray
	$(PY) bench/bench_generate.py --env doom
	$(PY) bench/bench_ray.py
	$(PY) bench/bench_doom_resolution.py
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_vae.py
	$(PY) bench/bench_mdnrnn.py
	$(PY) bench/bench_dream.py --generation
	$(PY) bench/bench_binpacking.py

clean:
	rm -rf $(RUN)
