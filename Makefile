# Set-up and the two everyday commands: `make demo` (the workflow on the built-in
# demo) and `make test` (the test suite). Both create .venv on first use.
#
#   TORCH=...        the torch requirement to install first (default: pyproject.toml's, which
#                    gets a CUDA build from PyPI on most Linux machines; see README "CPU or
#                    CUDA build")
#   TORCH_INDEX=...  a pip index URL for that torch build (optional)
#   CORES=N          cores for snakemake (default: all)

PYTHON ?= python3
VENV ?= .venv
# The torch floor is stated once, in pyproject.toml's dependencies.
TORCH ?= $(shell sed -n 's/^ *"\(torch[<>=~!][^"]*\)".*/\1/p' pyproject.toml)
TORCH_INDEX ?=
CORES ?= all

export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test clean

install: $(VENV)/.installed

# torch goes in first so that the project's loose torch requirement does not pull a CUDA build.
# opencv-python-headless (runtime) and opencv-contrib-python-headless (`test` extra: cv2.img_hash)
# both install the `cv2` package; contrib holds every module of the other, so when the other's
# files ended up on top, contrib is written again.
CONTRIB_CHECK = import cv2, numpy; cv2.img_hash.blockMeanHash(numpy.zeros((8, 8), numpy.uint8))
CONTRIB_VERSION = import importlib.metadata as m; print(m.version("opencv-contrib-python-headless"))

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[workflow,test]"
	$(VENV)/bin/python -c '$(CONTRIB_CHECK)' 2>/dev/null || $(VENV)/bin/pip install --quiet --force-reinstall \
	    --no-deps "opencv-contrib-python-headless==$$($(VENV)/bin/python -c '$(CONTRIB_VERSION)')"
	touch $@

demo: install
	snakemake --cores $(CORES)

test: install
	pytest

clean:
	rm -rf results .snakemake
