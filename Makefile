# Every target works on a fresh clone with only python3.11, pip and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

# What each target installs (pyproject.toml's extras). `make test` takes every extra, as
# its tests use them all (Ray, matplotlib, the emulator, ...): an extra or a package added
# to pyproject.toml comes along. `make demo` takes only the emulator.
TEST_EXTRAS  := $(shell $(PYTHON) -c 'import tomllib; print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]))')
DEMO_EXTRAS  := emulator
BENCH_EXTRAS := emulator,bench

.PHONY: test demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras: re-installed when pyproject.toml changes, skipped otherwise.
$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[$*]'
	touch $@

test: $(VENV)/.installed-$(TEST_EXTRAS)
	$(PY) -m pytest

demo: $(VENV)/.installed-$(DEMO_EXTRAS)
	$(PY) -m fleetrel demo

bench: $(VENV)/.installed-$(BENCH_EXTRAS)
	$(PY) benchmarks/run.py --quick

# The documentation site into build/site; --strict fails on a broken link or anchor.
.PHONY: docs
docs: | $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache *.journal.jsonl
