# `make demo` and `make test` each install what they need on a fresh machine, then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo app test browser bench clean

install: $(STAMP)

# torch first (from the wheels on disk); basicsr 1.4.2 after it with --no-deps --no-build-isolation:
# its setup would otherwise copy torch into a build env and pull opencv-python over the headless one.
$(STAMP): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation basicsr==1.4.2
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(PY) -m spatial_restore.demo

app: install
	$(PY) -m spatial_restore.app

test: install browser
	$(PY) -m pytest -q tests

# Debian's Chromium and its WebDriver, for the browser test of the app (tests/test_app_live.py); needs root,
# as on CI (elsewhere: sudo apt-get install chromium chromium-driver).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

bench: install
	$(PY) -m spatial_restore.bench kernels

clean:
	rm -rf $(VENV) build *.egg-info
