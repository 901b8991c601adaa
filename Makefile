# make run  - create .venv, install the app and every plugin under plugins/, open the demo
# make test - the same set-up, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP := $(VENV)/.installed

.PHONY: setup run test demo-train bench clean wheelhouse install-offline app

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]" $(addprefix -e ,$(PLUGIN_DIRS))
	touch $(STAMP)

run: setup
	$(BIN)/desktop-tl gui --demo

# Two test processes (pytest-xdist), each test file in one of them: the suite waits on
# subprocesses and the window's event loop for much of its time, so one process leaves
# the second core idle.
TEST_PROCESSES ?= 2

test: setup
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile

demo-train: setup
	$(BIN)/desktop-tl train --demo

bench: setup
	$(BIN)/python tests/benchmarks/bench_recipe.py

# make wheelhouse [WHEELHOUSE=DIR] [WHEELHOUSE_ARGS="--torch cpu"] - one folder that installs offline
# make install-offline WHEELHOUSE=DIR [OFFLINE_VENV=DIR] - verify its checksums, install with --no-index
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_ARGS ?=
OFFLINE_VENV ?=

wheelhouse:
	$(PYTHON) scripts/wheelhouse.py build $(WHEELHOUSE) $(WHEELHOUSE_ARGS)

install-offline:
	$(PYTHON) $(WHEELHOUSE)/install.py $(OFFLINE_VENV)

# make app - the bundled application folder dist/desktop-tl (PyInstaller), then one demo epoch with it
app: setup
	$(BIN)/python -m pip install --quiet -e ".[app]"
	$(BIN)/python scripts/build_app.py --smoke

clean:
	rm -rf $(VENV) build build-app dist *.egg-info
