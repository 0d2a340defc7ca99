# vinyl's developer commands. `make demo` and `make test` build the virtualenv themselves.
#
#   PYTHON=...      interpreter for a new virtualenv (default: newest Python >= 3.11 found)
#   VENV=...        virtualenv folder (default: .venv)
#   DJANGO=...      a Django requirement installed over the default, e.g. DJANGO='django>=5.2,<6'
#   PYTEST_ARGS=... extra arguments for pytest
#   BENCH_ARGS=...  extra arguments for python -m bench, e.g. BENCH_ARGS=--quick
#   SUITE_ARGS=...  extra arguments for python -m tests.django_suite, e.g. SUITE_ARGS='--legs sync'
#   DEMO_ARGS=...   extra arguments for python -m demo, e.g. DEMO_ARGS='--workers 2'
#   DATABASE_URL    use this PostgreSQL server instead of starting an embedded one in .build/

PYTHON ?=
VENV ?= .venv
DJANGO ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
SUITE_ARGS ?=
DEMO_ARGS ?=

SHELL := bash
.SHELLFLAGS := -o pipefail -c
VENV_PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PIP_INSTALL := $(VENV_PYTHON) -m pip install --quiet
# pip warns once per package about local index folders that lack it (seen on the dev machines).
QUIET_PIP := 2>&1 | { grep -v "^WARNING: Location 'file:.* is ignored" || true; }

.PHONY: all demo test lint bench django-suite venv FORCE
all: test

demo: $(STAMP)
	$(VENV_PYTHON) -m demo $(DEMO_ARGS)

test: $(STAMP)
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)
	@# The demo project's own tests (its conftest loads the demo's settings); 5 = none selected.
	$(VENV_PYTHON) -m pytest demo/tests $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/basedpyright

bench: $(STAMP)
	$(VENV_PYTHON) -m bench $(BENCH_ARGS)

# Django's own test suite against vinyl (tests/django_suite; downloads Django's sdist once).
django-suite: $(STAMP)
	$(VENV_PYTHON) -m tests.django_suite $(SUITE_ARGS)

venv: $(STAMP)

# What the virtualenv was built for. The file is rewritten only when PYTHON or DJANGO change,
# and then the virtualenv is built anew.
$(VENV)/.settings: FORCE
	@settings='python=$(PYTHON) django=$(DJANGO)'; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$settings" ]; then \
	    rm -rf $(VENV) && mkdir -p $(VENV) && echo "$$settings" > $@; \
	fi

$(STAMP): pyproject.toml $(VENV)/.settings
	@if [ ! -x $(VENV_PYTHON) ]; then \
	    python="$(PYTHON)"; \
	    [ -n "$$python" ] || python=$$(sh devtools/find-python) || exit 1; \
	    echo "Creating $(VENV) with $$python ($$($$python --version))"; \
	    "$$python" -m venv $(VENV) || exit 1; \
	fi
	@echo "$(PIP_INSTALL) --editable '.[dev]'"; $(PIP_INSTALL) --editable '.[dev]' $(QUIET_PIP)
	$(if $(DJANGO),@echo "$(PIP_INSTALL) '$(DJANGO)'"; $(PIP_INSTALL) '$(DJANGO)' $(QUIET_PIP))
	@$(VENV_PYTHON) -c 'import django, sys; print(f"$(VENV): Python {sys.version.split()[0]}, Django {django.__version__}")'
	@touch $@

FORCE:
