# The README's two commands: `make demo` and `make test`. Both set up what they
# need on a fresh machine: the virtual environment, the project, and (for the
# GUI tests) Xvfb + Mesa from Debian's packages.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip
# torch from the local disk on the build machines (a CUDA build that also runs
# on the CPU). Override on other machines, e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

# What napari needs to draw under Xvfb with Mesa's software OpenGL.
SYS_PKGS := xvfb xauth libgl1 libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
	libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
	libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libdbus-1-3 libfontconfig1

PYTEST_ARGS ?=
XVFB_RUN := xvfb-run -a -s "-screen 0 1600x1000x24"

.PHONY: demo test sysdeps venv install install-test clean-venv

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch first and pinned, so no other requirement pulls a different build.
$(VENV)/.torch: | $(VPY)
	$(PIP) install $(TORCH_SPEC)
	touch $@

$(VENV)/.installed-gui: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[gui,qt]"
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[test]"
	touch $@

venv: $(VENV)/.torch
install: $(VENV)/.installed-gui
install-test: $(VENV)/.installed-test

# Debian packages for the GUI tests; installs only what is missing.
sysdeps:
	@missing=""; for p in $(SYS_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages for the GUI tests:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: sysdeps $(VENV)/.installed-test
	$(XVFB_RUN) $(VPY) -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed-gui
	$(VPY) -m napari_calf._napari.demo

clean-venv:
	rm -rf $(VENV)
