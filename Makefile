# Two set-up-to-result commands for a fresh machine: `make demo` and `make test`.
# The venv is rebuilt from scratch whenever the dependency spec changes (its hash names the stamp file).
PYTHON ?= python3
VENV ?= .venv
DEPS_HASH := $(shell cat requirements/pinned.txt pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
BIN := $(VENV)/bin

.PHONY: demo test bench install clean

# No file prerequisites: the stamp's name carries the hash of the spec, so a fresh clone (new mtimes)
# reuses a venv whose spec is unchanged, and any change of spec names a stamp that does not exist yet.
$(STAMP):
	rm -rf "$(VENV)"
	$(PYTHON) -m venv "$(VENV)"
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/pinned.txt
	touch "$(STAMP)"

install: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .

demo: install
	$(BIN)/netscope summary

test: install
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf "$(VENV)" build *.egg-info
