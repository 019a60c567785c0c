# densenet-spec: `make demo` (the main job) and `make test` (every check) work on a fresh machine.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint docs bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	mkdir -p out
	$(BIN)/densenet-spec summary densenet121
	$(BIN)/densenet-spec build densenet121 --to torch -o out/densenet121.py
	$(BIN)/python out/densenet121.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

docs: setup
	$(BIN)/python scripts/gen_docs.py docs

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/torch_backend.py
	$(BIN)/python benchmarks/onnx_export.py
	$(BIN)/python benchmarks/fast_and_lean.py

clean:
	rm -rf out build dist .pytest_cache .mypy_cache .ruff_cache
