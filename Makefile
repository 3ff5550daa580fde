# The README's commands: `make demo`, `make test` (every test) and `make test-unit` (the fast tier). All set up .venv first (once).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-unit test-gpu lint demo bench clean

setup:
	@bash scripts/setup_venv.sh

test: setup
	$(PY) -m pytest -q

# The fast tier: no Ray, vLLM, DeepSpeed or child process (tests/conftest.py enforces it).
test-unit: setup
	$(PY) -m pytest -q -m "not slow and not gpu"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

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
