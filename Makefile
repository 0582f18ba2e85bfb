# diffusion-course: `make course` and `make test` are all the set-up there is.
# Both create .venv and install the package into it when it is missing or out of date.

PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= auto
BUILD   := build
BOOK_FLAGS ?=

.PHONY: course course-check gpu-dryrun colab-resolve py313 test unit notebooks book sweep bench weights install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,book]"
	touch $(STAMP)

install: $(STAMP)

## course: execute every notebook (PROFILE=smoke|cpu|gpu|auto) into build/notebooks, then build the book
course: $(STAMP)
	COURSE_STATIC=1 PYTHONUNBUFFERED=1 $(PY) -m course_lib.sweep all --profile $(PROFILE) --out $(BUILD)/notebooks
	$(MAKE) --no-print-directory book
	@echo "The book is ready: open $(abspath $(BUILD))/book/html/index.html"

## course-check: the cpu course as a learner meets it, with every guard: fresh model cache, every chapter
##   (seed 0, each within CHAPTER_SECONDS), then chapters 04, 06, 07 and 10 again with seeds 1 and 2.
##   Run it before resolving an issue that touches a chapter; the cpu-course workflow runs it weekly.
CHECK := $(BUILD)/course-check
CHAPTER_SECONDS ?= 600
course-check: $(STAMP)
	rm -rf $(CHECK)
	export COURSE_RUNS_DIR=$(abspath $(CHECK))/runs COURSE_STATIC=1 PYTHONUNBUFFERED=1; \
	$(PY) -m course_lib.sweep all --profile cpu --keep-going --max-seconds $(CHAPTER_SECONDS) --out $(CHECK)/seed0 && \
	for s in 1 2; do \
	  $(PY) -m course_lib.sweep all --profile cpu --keep-going --seed $$s --only 04 06 07 10 --out $(CHECK)/seed$$s || exit 1; \
	done

## gpu-dryrun: every chapter with its gpu configuration (sizes, batch sizes, widths, bf16 autocast) on this machine,
##   every training run and sampler capped to a few steps (settings.capped) and every count a chapter picks
##   (pictures, FID sizes: settings.capped_count) to a handful: what a Colab T4 would execute, in minutes.
##   Two halves side by side, one thread each (CI runs it after `make test`); each half holds the chapters whose
##   models it trains and reuses (A: chapter 04's digits network and its readers; B: the rest), so no model is
##   trained by both at once. Each half's log is build/gpu-dryrun/{a,b}.log.
DRYRUN_A ?= 00_ 01_ 02_ 03_ 04_ 05_ 06_ 07_ 09_ 10_
DRYRUN_B ?= 08_ 11_ 12_ 13_ 14_ 15_ 16_
DRYRUN   := $(BUILD)/gpu-dryrun
gpu-dryrun: $(STAMP)
	rm -rf $(DRYRUN) && mkdir -p $(DRYRUN)
	export COURSE_GPU_DRYRUN=1 COURSE_RUNS_DIR=$(abspath $(DRYRUN))/runs COURSE_STATIC=1 PYTHONUNBUFFERED=1 \
	  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; \
	$(PY) -m course_lib.sweep all --profile gpu --keep-going --only $(DRYRUN_A) --out $(DRYRUN)/notebooks \
	  > $(DRYRUN)/a.log 2>&1 & a=$$!; \
	$(PY) -m course_lib.sweep all --profile gpu --keep-going --only $(DRYRUN_B) --out $(DRYRUN)/notebooks \
	  > $(DRYRUN)/b.log 2>&1; b=$$?; wait $$a; a=$$?; \
	cat $(DRYRUN)/a.log $(DRYRUN)/b.log; echo "gpu dry run: half A exit $$a, half B exit $$b"; test $$a -eq 0 -a $$b -eq 0

## py313: Colab's Python (3.13) here: a fresh venv resolves and installs the package and its test extra from the
##   registry (no borrowed site-packages), then runs the core unit tests and chapters 00-03 in the smoke profile
PY313 ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
CORE_TESTS := tests/test_schedules.py tests/test_forward.py tests/test_samplers.py tests/test_training.py \
              tests/test_registry.py tests/test_checkpoints.py tests/test_claims.py tests/test_colab.py
py313:
	test -n "$(PY313)" || { echo "no python3.13 here (pyenv install 3.13.0)"; exit 1; }
	rm -rf $(BUILD)/py313
	$(PY313) -m venv $(BUILD)/py313
	$(BUILD)/py313/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	COURSE_PROFILE=smoke COURSE_RUNS_DIR=$(abspath $(BUILD))/py313-runs $(BUILD)/py313/bin/python -m pytest -n 2 \
	  -p no:cacheprovider $(CORE_TESTS) "tests/test_chapters_run.py::test_chapter_runs_in_smoke_profile[00_welcome]" \
	  "tests/test_chapters_run.py::test_chapter_runs_in_smoke_profile[01_forward_process]" \
	  "tests/test_chapters_run.py::test_chapter_runs_in_smoke_profile[02_noise_schedules]" \
	  "tests/test_chapters_run.py::test_chapter_runs_in_smoke_profile[03_denoiser]"

## colab-resolve: pip's resolver, online, for Colab's interpreter and pins (tests/test_colab.py's COLAB): the package's
##   requirements and its test extra resolve for CPython 3.13 on manylinux x86-64 from wheels alone, with torch, numpy
##   and torchvision held at Colab's versions; nothing is installed (the report lists what would be)
COLAB_PINS ?= torch==2.11.0 numpy==2.1.0 torchvision==0.26.0
RESOLVE    := $(BUILD)/colab-resolve
colab-resolve: $(STAMP)
	rm -rf $(RESOLVE) && mkdir -p $(RESOLVE)
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	  print(*p['dependencies'], *p['optional-dependencies']['test'], sep=chr(10))" > $(RESOLVE)/requirements.txt
	printf '%s\n' $(COLAB_PINS) > $(RESOLVE)/colab.txt
	$(PY) -m pip install --dry-run --quiet --ignore-installed --target $(RESOLVE)/never --python-version 3.13 \
	  --implementation cp --only-binary=:all: $(foreach v,$(shell seq 17 39),--platform manylinux_2_$(v)_x86_64) \
	  --platform manylinux2014_x86_64 --platform any --report $(RESOLVE)/report.json \
	  -r $(RESOLVE)/requirements.txt -c $(RESOLVE)/colab.txt
	$(PY) -c "import json; r = json.load(open('$(RESOLVE)/report.json'))['install']; \
	  v = {i['metadata']['name'].lower(): i['metadata']['version'] for i in r}; \
	  print(f'resolved {len(v)} packages for Python 3.13:', ', '.join(f'{k} {v[k]}' for k in ('torch', 'numpy', 'torchvision')))"

## book: build the Jupyter Book from the executed notebooks in build/notebooks
book: $(STAMP)
	rm -rf $(BUILD)/book_src $(BUILD)/book_out $(BUILD)/book/html
	mkdir -p $(BUILD)/book_src/notebooks $(BUILD)/book
	cp book/*.md book/_config.yml book/_toc.yml $(BUILD)/book_src/
	cp $(BUILD)/notebooks/[0-9][0-9]_*.ipynb $(BUILD)/book_src/notebooks/
	$(VENV)/bin/jupyter-book build $(BUILD)/book_src --path-output $(BUILD)/book_out --all $(BOOK_FLAGS)
	mv $(BUILD)/book_out/_build/html $(BUILD)/book/html

## test: unit + diffusers-oracle tests and every chapter executed once in the smoke profile (on both cores),
##       then a warnings-as-errors book build from those executed chapters and the book checks
test: $(STAMP)
	COURSE_PROFILE=smoke $(PY) -m pytest -n 2 --dist loadgroup -p no:cacheprovider tests
	$(MAKE) --no-print-directory book BOOK_FLAGS="-W -n --keep-going"
	$(PY) -m pytest -p no:cacheprovider tests/book_checks.py

## sweep: rerun one notebook over a parameter grid and print the figures it records, one row per run, e.g.
##   make sweep NB=notebooks/02_noise_schedules.ipynb ARGS="-p schedule linear,cosine"
## (default: chapter 07 over guidance scale × sampler; the table is also written to build/sweep/*__results.csv)
NB   ?= notebooks/07_guidance.ipynb
ARGS ?= -p scales 1,3 -p sampler ddim,dpmpp_2m
sweep: $(STAMP)
	$(PY) -m course_lib.sweep grid $(NB) --profile $(PROFILE) $(ARGS)

## bench: every measuring script in benchmarks/, printing its table (PROFILE as above). The train_* scripts that
##        write shipped weights are not benchmarks: `make weights` runs them.
WEIGHT_WRITERS := $(addprefix benchmarks/,train_feature_net.py train_attribute_net.py train_scene_judge.py \
                  train_digits_cond.py train_flows.py train_latent.py train_captions.py train_dit.py train_onestep.py train_clip.py)
BENCHMARKS := $(filter-out $(WEIGHT_WRITERS),$(wildcard benchmarks/[!_]*.py))
bench: $(STAMP)
	for b in $(BENCHMARKS); do echo "== $$b"; $(PY) $$b --profile $(PROFILE) || exit 1; done

## weights: retrain every shipped network (hours on a CPU) into WEIGHTS_OUT (default build/weights, never the package's
##          own folder unless you say so: `make weights WEIGHTS_OUT=course_lib/weights`); each writes weights + card
WEIGHTS_OUT ?= $(BUILD)/weights
weights: $(STAMP)
	mkdir -p $(WEIGHTS_OUT)
	for w in $(WEIGHT_WRITERS); do echo "== $$w"; $(PY) $$w --out-dir $(WEIGHTS_OUT) || exit 1; done

clean:
	rm -rf $(BUILD)
