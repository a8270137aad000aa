# Two commands do all set-up on a fresh machine (Python >= 3.11 with venv and pip):
#   make baseline   train the notebook's model and write a run directory under runs/
#   make test       run the test suite (both cores; prints its 15 slowest tests)
#   make test-fast  the one-minute tier for the edit loop (both cores): pure functions, the golden test, lint
#                   and format, and each command once on tiny data (pytest -m "not slow")
#   make docs       build the documentation site into docs/_build/html (warnings as errors); it executes the
#                   notebooks with their defaults on the MNIST of $MNIST_JAX_DATA (cached until they change)
# Both create .venv/ on first use and install the project into it (pinned by constraints.txt).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: baseline test test-fast docs bench sweep clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,tfds,search,docs]'
	touch $(STAMP)

baseline: $(STAMP)
	$(PY) -m experiments.baseline $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --durations=15 $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -n 2 --dist loadscope --durations=5 $(ARGS)

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

bench: $(STAMP)
	$(PY) -m experiments.bench $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache docs/_build
