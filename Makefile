# Two entry points (see README): `make serve` and `make test`.
# Both create or reuse .venv and install torch first, pinned, where no torch is
# installed yet: an unpinned torch would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?= -m "not gpu"

.PHONY: venv serve test doctor tiny bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[test]"

serve: venv
	$(VENV)/bin/enfoads serve

doctor: venv
	$(VENV)/bin/enfoads doctor

tiny: venv
	$(VENV)/bin/enfoads build-tiny

test: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) bench/residency_trace.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
