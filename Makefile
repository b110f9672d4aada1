# Both targets create (or reuse) .venv and install what they need; nothing is downloaded from a model hub.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch that lies on disk; the package itself accepts any torch >= 2.4.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# One pytest worker per core, each on one thread: the tests' tiny models use a core each better than two threads
# share one (4-7 min instead of 10-12 on 2 cores).
test: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m agsm.demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) runs
