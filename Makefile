# Developer entry points.
#   make test                 create .venv (if needed) with the newest versions the requirements allow, run the suite
#   make test-transformers4   the transformers-dependent tests (marker `transformers`) with transformers 4.x,
#                             in a second environment (.venv-transformers4)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
VENV4 ?= .venv-transformers4
PY4 := $(VENV4)/bin/python
STAMP4 := $(VENV4)/.installed

# PyTorch, first, so that installing the package does not pull another build: the version CI tests, as the CUDA
# build (pip's default) on a machine with an NVIDIA driver, else the CPU build: from pip's own sources when they
# carry it (a wheel folder or mirror pip is configured with, as on this project's CI machines), else from
# PyTorch's CPU index as PyTorch's install page says.
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
define install_torch
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(1) install -q torch==$(TORCH_VERSION); \
	elif $(1) install -q --dry-run --no-deps --no-index torch==$(TORCH_VERSION)+cpu >/dev/null 2>&1; then \
		$(1) install -q torch==$(TORCH_VERSION)+cpu; \
	else \
		$(1) install -q torch==$(TORCH_VERSION) --index-url $(TORCH_CPU_INDEX); \
	fi
endef

.PHONY: install install-transformers4 test test-transformers4 lint dist demo bench clean

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call install_torch,$(PIP))
	$(PIP) install -q -e '.[dev,app,notebook]'
	$(PIP) check
	touch $(STAMP)

install: $(STAMP)

# transformers 4.x with the huggingface_hub it accepts (0.x), and only what its tests need (the 'test' extra).
$(STAMP4): setup.py requirements.txt
	test -x $(PY4) || $(PYTHON) -m venv $(VENV4)
	$(call install_torch,$(PY4) -m pip)
	$(PY4) -m pip install -q -e '.[test]' 'transformers>=4.40,<5'
	$(PY4) -m pip check
	touch $(STAMP4)

install-transformers4: $(STAMP4)

test: $(STAMP)
	$(PY) -m pytest tests -rs

test-transformers4: $(STAMP4)
	$(PY4) -m pytest tests -m transformers -rs

lint: $(STAMP)
	$(PY) -m flake8 audiocraft
	$(PY) -m mypy audiocraft

dist: $(STAMP)
	$(PIP) install -q build
	$(PY) -m build --sdist --wheel --no-isolation

demo: $(STAMP)
	$(PY) -m audiocraft.cli "lofi beat with a mellow piano" --duration 8 --model facebook/musicgen-small --out demo_out.wav --demo

bench: $(STAMP)
	$(PY) benchmarks/generate.py --fixtures .bench-models
	$(PY) benchmarks/streaming.py --fixtures .bench-models
	$(PY) benchmarks/kernel_ceiling.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache
