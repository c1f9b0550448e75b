# Two commands from a fresh clone: `make demo` and `make test`.
# Both create .venv when missing and install only when pyproject.toml changed (idempotent).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first: on this machine `pip install torch==2.13.0` takes the CPU build from local disk,
# so nothing later pulls a multi-GB CUDA build. The project itself asks for a range (torch>=2.4).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q "torch==2.13.0"
	$(BIN)/pip install --disable-pip-version-check -q -e ".[all]"
	@# the PostgreSQL tune test (tests/tune) starts a throwaway server; as root with apt we install it, else it skips
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		apt-get install -y -q postgresql >/dev/null 2>&1 || echo "postgresql not installed: the PostgreSQL tune test will skip"; fi
	@# the built-in spoken-digits synthesises speech with espeak-ng; as root with apt we install it, else its tests skip
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v espeak-ng >/dev/null; then \
		apt-get install -y -q espeak-ng >/dev/null 2>&1 || echo "espeak-ng not installed: the spoken-digits tests will skip"; fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/trainforge run examples/quickstart.yaml

test: $(STAMP)
	OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs mlruns .pytest_cache
