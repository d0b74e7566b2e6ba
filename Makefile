# Two entry points (see README): `make serve` and `make test`.
# Both create or reuse .venv and install torch and torchvision first, pinned, where they
# are not importable together yet: spandrel (the upscalers) imports torchvision, which must
# be the build made for that torch. PyPI's torch 2.14.1 + torchvision 0.29.1 run on a CPU
# too (CUDA-linked, about 5.5 GB); the local CPU-only torch 2.13.0 has no torchvision.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -m "not gpu"
# pytest-xdist workers: one per core, at most 4 (each builds its own tiny kit and app, about 2 GB);
# JOBS=0 runs the tests in this one process.
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
XDIST := -n $(JOBS) --dist loadfile --no-loadscope-reorder

.PHONY: venv serve test test-quick doctor tiny bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test]"

serve: venv
	$(VENV)/bin/enfoads serve

doctor: venv
	$(VENV)/bin/enfoads doctor

tiny: venv
	$(VENV)/bin/enfoads build-tiny

test: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# The inner loop: everything that runs in the test's own process (test client, service contract, real
# loaders on the tiny kit); leaves out `slow`, the tests of real processes (enfoads serve,
# Ray, the notebook kernel, chromium, a fresh venv). `make test` (CI) runs them all.
test-quick: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(XDIST) -m "not gpu and not slow" $(QUICK_ARGS)

bench: venv
	$(PY) bench/residency_trace.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
