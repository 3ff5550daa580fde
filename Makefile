# The README's two commands: `make demo` and `make test`. Both set up .venv first (once).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-gpu demo bench clean

setup:
	@bash scripts/setup_venv.sh

test: setup
	$(PY) -m pytest -q

test-gpu: setup
	$(PY) -m pytest -q -m gpu

demo: setup
	$(VENV)/bin/bppo bootstrap --config configs/tiny_cpu.yaml
	$(VENV)/bin/bppo compare --config configs/compare_tiny_cpu.yaml
	@echo "report: runs/compare_tiny_cpu/report.md (figures beside it)"

bench: setup
	$(PY) benchmarks/reward_throughput.py
	$(PY) benchmarks/synthetic_data.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/early_stop.py
	$(PY) benchmarks/learner_memory.py
	$(PY) benchmarks/engine_core.py
	$(PY) benchmarks/data_tools.py

clean:
	rm -rf $(VENV) runs .pytest_cache
