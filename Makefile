# Two commands (see README.md):
#   make demo   the main job on the embedded digits data, with mpirun -n 2
#   make test   the whole test suite
# Both create .venv from requirements.txt (pinned versions) when it is missing or outdated.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := demo_out

.PHONY: demo test bench clean-demo

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	mkdir -p $(DEMO)
	cd $(DEMO) && ../$(VENV)/bin/mpirun -n 2 ../$(PY) ../plot_surface.py --model resnet20 \
		--dataset digits --data_split 4 --x=-1:1:11 --y=-1:1:11 --plot
	@echo "demo files are in $(CURDIR)/$(DEMO)"

bench: $(STAMP)
	$(PY) bench/bench_surface.py

clean-demo:
	rm -rf $(DEMO)
