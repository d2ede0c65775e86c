# Developer entry points. `make test` creates .venv (if needed), installs, runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install test lint dist demo bench clean

$(STAMP): setup.py requirements.txt
	@# torch CPU wheel first, so nothing pulls a CUDA build; then the package with the test and app extras.
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,app]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

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

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache
