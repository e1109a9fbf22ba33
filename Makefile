# Set-up and the two everyday commands: `make demo` (the workflow on the built-in
# demo) and `make test` (the test suite). Both create .venv on first use.
#
#   TORCH=...        the torch requirement to install first (default torch==2.13.0: a CUDA
#                    build from PyPI on most Linux machines; see README "CPU or CUDA build")
#   TORCH_INDEX=...  a pip index URL for that torch build (optional)
#   CORES=N          cores for snakemake (default: all)

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
CORES ?= all

export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test clean

install: $(VENV)/.installed

# torch goes in first so that the project's loose `torch>=2.2` does not pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

demo: install
	snakemake --cores $(CORES)

test: install
	pytest

clean:
	rm -rf results .snakemake
