# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup browser demo test bench-overhead bench-recommend bench-reliability bench-recipes bench-diagnosis bench-no-gain bench-repeat bench-threads bench-run-torchrun bench-torch-suite bench-autotune clean

setup: $(STAMP)

# torch is pinned through constraints.txt: an unpinned torch resolves to the multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -c constraints.txt -e '.[dev]'
	@# byte-compiled on every core (pip compiles on one; `time make setup` in a fresh clone: 135 s,
	@# so 110 s), but the model files of transformers (2,700 that the tests never import); like
	@# pip, a file that does not compile (a package's test data) is left to be compiled on import
	$(PY) -m compileall -q -j 0 -x '/(transformers/models|pip|setuptools)/' $(VENV)/lib >/dev/null 2>&1 || true
	touch $(STAMP)

# The main job on the most telling recipe, as a user runs it: a scan of the image-folder pipeline
# with the default budget (120 s). With 90 s, runs on a loaded machine ended differently: one had
# no room for the torch-threads trial, one (two busy processes beside it) was undecided after 4
# noisy pairs when the budget ran out; with 120 s that load gave the whole search (74 s) and a
# decided check (1.80x, 1.52-2.14x). benchmarks/repeat_scan.py measures how often runs agree.
demo: setup
	$(VENV)/bin/dlprof scan recipes/image_folder.py --out reports/demo

# Three test processes, a test file each at a time (a file's scans are shared by its tests): most
# tests wait on subprocesses, workers and datasets that sleep, and with two the 2 cores were idle
# 17-23% of the time (CPU time over wall time; three: 505 s to 443 s of wall). They pass under
# load, as they must on a machine of ours at half speed.
# Then the `solo` tests, alone: they compare processes side by side (ranks of a job), and a test
# beside them would load one side more than the other, or read their workers' memory.
# The venv and the browser are installed side by side (-j2): pip unpacks and compiles on the CPU
# while apt waits on the network, and CI's 10 minutes hold both.
SOLO_ARGS ?=
test:
	@$(MAKE) --no-print-directory -j2 setup browser
	$(PY) -m pytest -n 3 --dist loadfile -m "not solo" $(PYTEST_ARGS)
	$(PY) -m pytest -m solo $(SOLO_ARGS)

# Headless Chromium for the HTML report test. Not fatal: without it that test is skipped, saying so.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "make: could not install chromium; the browser test will be skipped"

bench-overhead: setup
	$(PY) benchmarks/overhead.py --out reports/benchmarks/overhead.txt
	$(PY) benchmarks/overhead.py --stacks --out reports/benchmarks/overhead-stacks.txt

bench-reliability: setup
	$(PY) benchmarks/reliability.py --out reports/reliability.md

# The scan's recommendation against an exhaustive grid of every recipe (about 40 minutes)
# The scan as users run it (the default 120 s budget; stacks left out: they change no
# recommendation) against the grid, all 17 recipes: about 75 minutes
bench-recommend: setup
	$(PY) benchmarks/recommend.py --seconds 1.5 --rounds 3 --final-seconds 4 --scan-args="--no-hotspots" --out reports/benchmarks/recommend.txt

# 50 random planted pipelines of five classes, diagnosed (seed from the clock; about 25 minutes)
bench-diagnosis: setup
	$(PY) benchmarks/diagnosis.py --out reports/diagnosis

# dlprof.autotune against each recipe as written and the grid's best (bench-recommend's results):
# seven recipes (stream.py: an iterable dataset), 120 s runs, one pair of them and the quality
# rounds (about 45 minutes)
bench-autotune: setup
	$(PY) benchmarks/autotune.py --seconds 120 --runs 1 --out reports/benchmarks/autotune.txt

# Two pipelines that nothing can speed up, scanned 10 times each: every scan must say "keep"
bench-no-gain: setup
	$(PY) benchmarks/no_gain.py --times 10 --out reports/benchmarks/no-gain.txt

# The demo's scan three times quiet and three times beside two busy processes: do runs agree?
bench-repeat: setup
	$(PY) benchmarks/repeat_scan.py --times 3 --busy 0,2 --out reports/benchmarks/repeat-scan.txt

# The torch-threads knob on image_folder, side by side (a scan, then up to 2 minutes of turns)
bench-threads: setup
	$(PY) benchmarks/threads_gain.py recipes/image_folder.py --out reports/benchmarks/threads.txt

# dlprof run of a 2-rank torchrun job, 10 times: no hang, the slowed rank named (about 3 minutes)
bench-run-torchrun: setup
	$(PY) benchmarks/run_torchrun.py --times 10 --out reports/benchmarks/run-torchrun.txt

# PyTorch's DataLoader tests, bare and under dlprof run (FILE: a copy of pytorch's
# test/test_dataloader.py; nothing is fetched; about 7 minutes)
bench-torch-suite: setup
	$(PY) benchmarks/torch_suite.py $(FILE) --out reports/benchmarks/torch-suite.txt

# A quick scan of every recipe (the tests scan one recipe per class): reports/recipes/
bench-recipes: setup
	$(PY) benchmarks/scan_recipes.py --scan-args=--quick --out reports/recipes

clean:
	rm -rf $(VENV) reports/demo .pytest_cache
