# Two commands set up everything on a fresh machine (Python >= 3.11):
#   make demo   prepare the environment if it is missing, then run the main job
#   make test   prepare the environment if it is missing, then run the tests (what CI runs)
# The environment is a venv in $(VENV); constraints.txt pins the CPU build of torch.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.unrollc-installed
SPEC ?= lista

.PHONY: demo test lint env wheel-check clean-env

env: $(STAMP)

# Reinstalled when the package metadata or the pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q -e ".[dev,test]" -c constraints.txt
	touch $@

demo: $(STAMP)
	$(BIN)/unrollc demo $(SPEC)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The linter (ruff, pinned in constraints.txt; its rules: pyproject.toml and ruff's defaults); CI runs it too.
lint: $(STAMP)
	$(BIN)/ruff check compiler runtime tests benchmarks

# Build a wheel from the repository, install it in a fresh venv (no editable install, no repo on
# the path) and run `unrollc demo` from it.
wheel-check:
	bash .ci/wheel_check

clean-env:
	rm -rf $(VENV)
