# One command each on a fresh Debian/Ubuntu machine with Python >= 3.10 and no ROS install:
#   make demo   the simulated robot following instructions with the shipped VLA
#   make test   lint (ruff) and the whole test suite (slow end-to-end tests included)
# Both run `make setup` first; it is idempotent and does nothing when its inputs did not change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.setup-done
# Debian packages: EGL + Mesa for MuJoCo's headless rendering, xmllint for the package.xml test.
APT_PACKAGES := libegl1 libgl1-mesa-dri libegl-mesa0 libxml2-utils
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup lerobot-setup demo test clean

setup: $(STAMP)

# torch goes first and pinned (constraints.txt): that spec takes the CPU build, while an unpinned
# torch, asked for directly or by another package, pulls gigabytes of CUDA wheels.
# The shipped files are copied into the venv's share/vla_ros, so a change to them reinstalls too.
SHIPPED_FILES := $(shell find launch config urdf bench resource models -type f 2>/dev/null)

$(STAMP): constraints.txt setup.py setup.cfg package.xml Makefile $(SHIPPED_FILES)
	@missing="$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e '.[ros-wheels,test]'
	touch $@

# LeRobot's own environment (the `lerobot` backend's server, the LeRobot tests and benchmark):
# LeRobot 0.4.4 pins torch < 2.11 and needs torchvision, which does not import beside the main
# venv's CPU torch, so it gets torch 2.9.1 + torchvision 0.24.1 from PyPI and vla_ros beside them
# (no ROS wheels). First time: about 3 GB of downloads and 8 GB on disk (README).
LEROBOT_VENV := .venv-lerobot
LEROBOT_STAMP := $(LEROBOT_VENV)/.setup-done

lerobot-setup: $(LEROBOT_STAMP)

$(LEROBOT_STAMP): constraints-lerobot.txt setup.py setup.cfg Makefile
	test -x $(LEROBOT_VENV)/bin/python || $(PYTHON) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/python -m pip install -q -c constraints-lerobot.txt torch torchvision
	$(LEROBOT_VENV)/bin/python -m pip install -q -c constraints-lerobot.txt lerobot -e .
	touch $@

demo: setup
	MUJOCO_GL=egl $(BIN)/vla-ros demo

test: setup lerobot-setup
	$(BIN)/ruff check .
	@$(BIN)/python -m pytest --run-slow --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a broken run, not a pass"; exit 1; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) build *.egg-info .pytest_cache
