# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv when missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Small GP linear algebra is far slower with busy-waiting OpenMP threads on few cores.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install peers demo test test-all lint clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(BIN)/pip install -c constraints.txt torch==2.13.0
	$(BIN)/pip install -c constraints.txt -e ".[dev,md,fftw]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/scalebridge demo

# Two pytest workers use the two cores; each stays single-threaded.
TEST_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

test: install
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2 --dist loadfile

test-all: install
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2 --dist loadfile -m ""

lint: install
	$(BIN)/ruff check .

peers: install
	$(BIN)/pip install -c constraints.txt -e ".[peers]"

clean:
	rm -rf $(VENV) build dist *.egg-info
