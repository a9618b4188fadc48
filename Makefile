# Both targets work on a fresh clone with only python3.11, pip and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml changes; the stamp keeps `make test` fast otherwise.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,emulator,bench,ray,observe]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m fleetrel demo

bench: $(STAMP)
	$(PY) benchmarks/run.py --quick

# The documentation site into build/site; --strict fails on a broken link or anchor.
.PHONY: docs
docs: | $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache *.journal.jsonl
