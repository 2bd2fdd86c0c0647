# Two entry points do all the set-up: `make audit` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU torch wheel lies in /opt/wheels on our machines; elsewhere pip uses the index.
FIND   := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt $(FIND)

.PHONY: install test test-fast audit bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev]'
	touch $@

test: install
	$(VENV)/bin/ruff check --select F,E9 src tests benchmarks scripts
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

audit: install
	$(VENV)/bin/actlab audit --preset quick --out results/audit-quick

bench: install
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
