# Every target sets up .venv first (Python 3.11: MXNet 1.9.1 needs NumPy 1.23.5, which has
# no wheels for 3.12+), then makes sure the data set is present.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup data train test bench notebook clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv) or run make PYTHON=/path/to/python3.11"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian/Ubuntu ship the real data set as a package; as root we install it, otherwise we
# say how (the CLI also accepts --data-dir, $$FASHION_MNIST_DIR or --download).
data: $(STAMP)
	@$(PY) -m gluon_softmax.data >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's dataset-fashion-mnist package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    $(PY) -m gluon_softmax.data; \
	    echo "Install it with: sudo apt-get install dataset-fashion-mnist"; \
	    echo "or put the four IDX files in DIR and run: FASHION_MNIST_DIR=DIR make $(MAKECMDGOALS)"; \
	    echo "or download them: $(PY) -m gluon_softmax.train --download"; \
	    exit 2; \
	  fi; }
	@$(PY) -m gluon_softmax.data

train: data
	$(PY) -m gluon_softmax.train $(ARGS)

test: data
	$(PY) -m pytest $(ARGS)

bench: data
	$(PY) -m gluon_softmax.bench $(ARGS)

notebook: data
	$(PY) -m pip install --quiet notebook
	$(VENV)/bin/jupyter notebook $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/softmax_regression.ipynb

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
