# Two commands (see README.md):
#   make demo   the main job on the embedded digits data, with mpirun -n 2
#   make test   the lint, then the whole test suite
# and the paper's findings at small scale:
#   make gallery every paper/ script on the digits data, on this CPU, rewriting paper/gallery/
#                (PNGs and numbers); prints how long it took
# Each creates .venv from requirements.txt (pinned versions) when it is missing or outdated.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := demo_out

.PHONY: demo test lint bench clean-demo

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

test: lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The demo trains ResNet-20 on the digits for 10 epochs (a checkpoint per epoch), then computes
# a filter-normalized 2D surface around it (--x=auto: a range fitted to the basin and its walls)
# and the loss on the plane of the training path's PCA directions, and the Hessian's |min/max|
# eigenvalue ratio along a line, all with mpirun -n 2, and draws the figures. Reruns reuse what exists.
DEMO_RUN := trained_nets/resnet20_sgd_lr=0.02_bs=128_wd=0.0005_mom=0.9_save_epoch=1_noaug_dataset=digits
DEMO_PCA := $(DEMO_RUN)/PCA_weights_save_epoch=1
DEMO_DATA := --model resnet20 --dataset digits
MPIRUN := ../$(VENV)/bin/mpirun -n 2 ../$(PY)

demo: $(STAMP)
	mkdir -p $(DEMO)
	cd $(DEMO) && (test -f $(DEMO_RUN)/model_10.t7 || ../$(PY) ../cifar10/main.py $(DEMO_DATA) \
		--epochs 10 --save_epoch 1 --lr 0.02 --noaug --channels_last)
	cd $(DEMO) && $(MPIRUN) ../plot_surface.py $(DEMO_DATA) --data_split 4 --channels_last \
		--model_file $(DEMO_RUN)/model_10.t7 --x=auto:21 --y=auto:21 --plot --format png
	cd $(DEMO) && ../$(PY) ../plot_trajectory.py $(DEMO_DATA) --model_folder $(DEMO_RUN) \
		--max_epoch 10 --format png
	cd $(DEMO) && $(MPIRUN) ../plot_surface.py $(DEMO_DATA) --data_split 4 --channels_last \
		--model_file $(DEMO_RUN)/model_10.t7 --dir_file $(DEMO_PCA)/directions.h5 \
		--proj_file $(DEMO_PCA)/directions.h5_proj_cos.h5 --x=-6:1:15 --y=-2:0.5:11 --plot --format png
	cd $(DEMO) && $(MPIRUN) ../plot_hessian_eigen.py $(DEMO_DATA) --data_split 32 \
		--model_file $(DEMO_RUN)/model_10.t7 --x=auto:5 --plot --format png
	@echo "demo files are in $(CURDIR)/$(DEMO) (checkpoints in $(DEMO)/$(DEMO_RUN))"

bench: $(STAMP)
	$(PY) bench/bench_reference.py
	$(PY) bench/bench_surface.py

clean-demo:
	rm -rf $(DEMO)

# One script per finding of the paper (README.md, "The paper's findings at small scale"); each
# trains what it needs into paper/out/ and skips every step whose outputs exist, so a rerun only
# redoes what is missing. Ordered so that figures sharing trained networks and surfaces come together.
# GALLERY_ARGS go to every script, e.g. make gallery GALLERY_ARGS="--threads 1" on a busy machine.
PAPER_FIGURES := fig1_skip_connections fig5_depth fig6_width fig7_hessian_ratio fig18_random_directions \
	fig3_linear_interpolation fig4_batch_size_weight_decay fig9_trajectories

.PHONY: gallery
gallery: $(STAMP)
	@start=$$(date +%s); \
	for fig in $(PAPER_FIGURES); do $(PY) paper/$$fig.py $(GALLERY_ARGS) || exit 1; done; \
	echo "gallery: paper/gallery/ rewritten in $$(( $$(date +%s) - start )) s ($(words $(PAPER_FIGURES)) figures)"
