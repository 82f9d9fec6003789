# Every target sets up the venv first, then makes sure the data set is present.
#
# The interpreter: PYTHON=..., else the first of python3.11, python3.12, python3.13 and python3
# that runs (a pyenv shim can exist without running). Each gets the NumPy constraints.txt pins
# for it: 1.23 on 3.11, 1.26 on 3.12, 2.x from 3.13 (gluon_softmax/_compat.py makes MXNet 1.9.1
# work with NumPy 2).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(or $(firstword $(foreach p,python3.11 python3.12 python3.13 python3,$(shell \
  $(p) -c '' 2>/dev/null && echo $(p)))),python3)
endif
# PYTHON=python3.12 may name a pyenv shim that runs only while 3.12 is pyenv's selected version:
# then pyenv's own python3.12 is used (the newest installed 3.12.x).
PYENV_DIR := $(or $(PYENV_ROOT),$(HOME)/.pyenv)
runs = $(shell $(1) -c '' 2>/dev/null && echo yes)
PYTHON_RUN := $(if $(call runs,$(PYTHON)),$(PYTHON),$(or $(lastword $(sort $(wildcard \
  $(PYENV_DIR)/versions/$(subst python,,$(notdir $(PYTHON))).*/bin/$(notdir $(PYTHON))))),$(PYTHON)))
# VENV=.venv-3.12 keeps a second venv beside the first (CI's other legs do).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

# major.minor of an interpreter, empty when it does not run
version_of = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
WANT := $(call version_of,$(PYTHON_RUN))
HAVE := $(call version_of,$(PY))

.PHONY: setup data train test test-fast test-tools bench notebook exercises notebook-html clean which-python FORCE \
  notebooks notebook-zh exercises-zh notebook-html-zh

setup: $(STAMP)

# The venv heals itself: one made by another interpreter (make PYTHON=... switched) or one whose
# python no longer runs is rebuilt, without make clean.
ifneq ($(HAVE),$(WANT))
$(STAMP): FORCE
endif

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@[ -n "$(WANT)" ] || { echo "error: $(PYTHON) does not run; install Python 3 (3.11 to 3.13 are tested: apt-get install python3-venv, uv python install 3.13) or run make PYTHON=/path/to/python3" >&2; exit 2; }
	@$(PYTHON_RUN) gluon_softmax/_compat.py || exit 2
	@if [ -e $(VENV) ] && [ "$(HAVE)" != "$(WANT)" ]; then \
	  echo "rebuilding $(VENV): it has Python $(or $(HAVE),that no longer runs), $(PYTHON_RUN) is $(WANT)"; \
	  rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON_RUN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# MXNet and d2l pin numpy<2 in their metadata: without their dependencies (setup.cfg says why)
	$(PY) -m pip install --quiet --no-deps -c constraints.txt mxnet d2l
	@# --no-warn-conflicts: pip would list MXNet's and d2l's numpy<2 pins, knowingly not followed
	$(PY) -m pip install --quiet --no-warn-conflicts -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Debian/Ubuntu ship the real data set as a package; as root we install it, otherwise we
# say how (the CLI also accepts --data-dir, $$FASHION_MNIST_DIR or --download).
data: $(STAMP)
	@# one check when the data set is there, a second after installing: 0.6 s (0.7 s of CPU, the
	@# files' SHA-256), MXNet not imported (python -m gluon_softmax.data, which imports it: 2.4 s)
	@$(PY) -m gluon_softmax.data_files 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's dataset-fashion-mnist package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    $(PY) -m gluon_softmax.data_files; \
	    echo "Install it with: sudo apt-get install dataset-fashion-mnist"; \
	    echo "or put the four IDX files in DIR and run: FASHION_MNIST_DIR=DIR make $(MAKECMDGOALS)"; \
	    echo "or download them: $(PY) -m gluon_softmax.train --download"; \
	    exit 2; \
	  fi; \
	  $(PY) -m gluon_softmax.data_files; }

train: data
	$(PY) -m gluon_softmax.train $(ARGS)

# Over the cores (pytest-xdist; JOBS=N sets the workers, JOBS=0 runs in one process; tests marked
# xdist_group share a worker). make test runs one worker more than cores: with one per core the
# cores were idle a tenth of the time (tests waiting on timers and children); measured on 2 cores,
# 2 pairs of runs: 343 and 365 s with 3 workers, 357 and 401 s with 2. make test-fast, nearly all
# CPU, one per core (3 interleaved pairs: 42-47 s with 2 workers, 50-53 s with 3). A hung test
# fails within 2 minutes with stacks (pytest-timeout, tests/procs.py).
JOBS ?=
CORES := $(shell nproc 2>/dev/null || echo 1)
test: data test-tools
	$(PY) -m pytest -n $(or $(JOBS),$(shell echo $$(($(CORES) + 1)))) --dist loadgroup --durations=10 $(ARGS)

# The tests a learner can afford: leaves out those marked slow (10-epoch runs, process jobs).
test-fast: data
	$(PY) -m pytest -n $(or $(JOBS),$(CORES)) --dist loadgroup -m "not slow" $(ARGS)

# What some tests need besides Python: Chromium (pages with figures), a CJK font (the Chinese
# notebooks' text) and ssh/sshd (simulated hosts); without them those tests are skipped. As root
# we install them, as make data does.
TEST_TOOLS_MISSING = $(strip $(if $(wildcard /usr/bin/chromium),,chromium) \
  $(if $(shell fc-list :lang=zh 2>/dev/null),,fonts-noto-cjk) \
  $(if $(shell command -v ssh),,openssh-client) \
  $(if $(or $(shell command -v sshd),$(wildcard /usr/sbin/sshd)),,openssh-server))
test-tools:
	@missing="$(TEST_TOOLS_MISSING)"; [ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing what tests need: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "note: $$missing missing, so their tests will be skipped; install with: sudo apt-get install $$missing"; \
	  fi; }

bench: data
	$(PY) -m gluon_softmax.bench $(ARGS)

NOTEBOOK_EXTRA = $(PY) -m pip install --quiet --no-warn-conflicts -c constraints.txt -e '.[notebook]'

notebook: data
	$(NOTEBOOK_EXTRA)
	$(VENV)/bin/jupyter notebook $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/softmax_regression.ipynb

# the chapter's exercises, each with a checker that says ok or gives one hint
exercises: data
	$(NOTEBOOK_EXTRA)
	$(VENV)/bin/jupyter notebook $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/exercises.ipynb

# the walk-through executed into one page that opens offline, formulas and figures included
notebook-html: data
	$(NOTEBOOK_EXTRA)
	$(PY) -m gluon_softmax.export notebooks/softmax_regression.ipynb --execute $(ARGS)

# 中文版: the same notebooks in Chinese (generated by make notebooks; figures and hints in Chinese
# because the file names end in .zh.ipynb, see gluon_softmax/language.py)
notebook-zh: data
	$(NOTEBOOK_EXTRA)
	$(VENV)/bin/jupyter notebook $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/softmax_regression.zh.ipynb

exercises-zh: data
	$(NOTEBOOK_EXTRA)
	$(VENV)/bin/jupyter notebook $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/exercises.zh.ipynb

notebook-html-zh: data
	$(NOTEBOOK_EXTRA)
	$(PY) -m gluon_softmax.export notebooks/softmax_regression.zh.ipynb --execute $(ARGS)

# regenerate the notebooks written from other files: the exercises and solutions from
# make_exercises.py, then every .zh.ipynb from its English notebook and notebooks/i18n/zh.json
# (fails, naming the cells, while a translation is missing or stale)
notebooks: $(STAMP)
	$(PY) notebooks/make_exercises.py
	$(PY) notebooks/translate.py

clean:
	rm -rf $(VENV) .venv .venv-3.12 .venv-3.13 build *.egg-info .pytest_cache

# make which-python: the interpreter and venv this make would use
which-python:
	@echo "$(PYTHON_RUN) (Python $(or $(WANT),that does not run)) -> $(VENV)"
