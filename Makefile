# napari-denoise: every target does its own set-up from a clean checkout.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned through a constraints file: an unpinned torch pulls several GB of CUDA wheels.
PIP_INSTALL := $(PIP) install -q -c constraints.txt
APT_PACKAGES := xvfb xauth libgl1 libgl1-mesa-dri libegl1 libglib2.0-0 libfontconfig1 \
	libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 \
	libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 \
	libxcb-xfixes0 libxcb-xkb1 libxrender1 libxi6

.PHONY: all venv system-deps demo test test-core lint napari bench train clean

all: test

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[testing,napari,qt,bm3d,cluster,bioimageio]"
	touch $@

venv: $(VENV)/.installed

# Xvfb and Mesa for napari's OpenGL canvas (the GUI tests and screenshots need a display).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: venv
	$(VENV)/bin/napari-denoise demo

test: venv system-deps test-core
	$(PY) -m pytest -q

# The engine, API and CLI in a second venv without the napari extra (as a dask worker or
# a headless server installs them): they must import and denoise there.
CORE_VENV := .venv-core
$(CORE_VENV)/.installed: pyproject.toml constraints.txt
	test -x $(CORE_VENV)/bin/python || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt torch==2.13.0
	$(CORE_VENV)/bin/python -m pip install -q -c constraints.txt -e .
	touch $@

test-core: $(CORE_VENV)/.installed
	$(CORE_VENV)/bin/python scripts/check_core_install.py

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

napari: venv system-deps
	$(PY) -m napari_denoise._launch

bench: venv
	$(VENV)/bin/napari-denoise bench

# Recreates the shipped model(s) from ../shared/data (allowed splits only; see the script).
train: venv
	$(PY) scripts/train_shipped.py --minutes 25

clean:
	rm -rf $(VENV) $(CORE_VENV) build dist *.egg-info .pytest_cache
