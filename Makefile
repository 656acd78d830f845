# spurnb: two commands for users (README Quickstart), a few for developers.
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.spurnb-installed

.PHONY: reproduce docs lab test pytest smoke-run nbdev-test site-check install export sync-check clean-runs generator pretrained

## make reproduce: run every notebook on the cpu profile, regenerate figures/cpu/ and the site in docs/
reproduce: $(STAMP)
	$(BIN)/spurnb reproduce --profile cpu
	$(BIN)/spurnb docs --profile cpu

## make docs: rebuild the site in docs/ from the executed notebooks in runs/cpu/ (runs nothing)
docs: $(STAMP)
	$(BIN)/spurnb docs --profile cpu

## make lab: open the notebooks in JupyterLab
lab: $(STAMP)
	$(BIN)/jupyter lab nbs/

## make test: an export/clean sync check; then pytest and a smoke papermill run side by side (`make -j2`; each
## prints when it ends); then, also side by side, the notebooks' own tests and the site checks (both read the smoke
## run). Every process runs one thread: two cores are already busy with two or more processes, and a two-thread
## process among them spins in OpenMP's barriers (three 2-thread trainings side by side used 3-4x the CPU time of the
## same trainings at one thread each; benchmarks/threads.txt)
test: $(STAMP)
	$(MAKE) --no-print-directory sync-check
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target pytest smoke-run SMOKE_JOBS=1 SMOKE_ONE_KERNEL=1
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 --output-sync=target nbdev-test site-check

## make nbdev-test: the notebooks' own tests (nbdev_test), two at a time, on the smoke run's cached models; their
## figures go to runs/nbdev_test
nbdev-test: $(STAMP)
	OMP_NUM_THREADS=1 SPURNB_PROFILE=smoke SPURNB_FIGURES=runs/nbdev_test/figures $(BIN)/nbdev_test --n_workers 2 --timing

## make site-check: the smoke run's site built and checked in headless Chromium (screenshots in runs/), and the
## committed cpu site in docs/ (the site building is single-threaded: it runs beside nbdev-test in make test)
site-check: $(STAMP)
	$(BIN)/spurnb docs --profile smoke
	$(BIN)/spurnb check-site runs/smoke/site --screenshots runs/
	$(BIN)/spurnb check-site docs

## make pytest: the test suite on two worker processes, one test file at a time each, the slowest files first; one
## thread per worker, so that the two workers use the two cores (the paper-profile test sets its own runs to one
## thread too: at two each it took 697 s alone, not 498)
pytest: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests

## make smoke-run: every notebook at smoke size under papermill (runs/smoke, figures/smoke, runs/cache); a single
## kernel leaves about 40% of two cores idle, which pytest uses when `make test` runs both. There (SMOKE_JOBS=1) its
## independent jobs run in the kernel, one after another: pytest keeps the other core busy, and each pool of worker
## processes would first import torch and spurnb again (~10 CPU-s per worker). There too (SMOKE_ONE_KERNEL=1) the
## notebooks share one kernel, reset between them (`--one-kernel`): a kernel each imports torch, diffusers and seaborn
## twenty times; nbdev_test still runs every notebook in a fresh process, and the fault tests run fresh kernels
SMOKE_JOBS ?=
SMOKE_ONE_KERNEL ?=
smoke-run: $(STAMP)
	$(if $(SMOKE_JOBS),SPURNB_JOBS=$(SMOKE_JOBS) )$(BIN)/spurnb reproduce --profile smoke$(if $(SMOKE_ONE_KERNEL), --one-kernel)

## make generator: retrain the embedded mini Stable Diffusion and its inpainting UNet (resumable); replace spurnb/assets/mini-sd*
generator: $(STAMP)
	mkdir -p runs/cpu
	cd nbs && ../$(BIN)/papermill 04_generator.ipynb ../runs/cpu/04_generator.ipynb -p profile cpu -p retrain True \
	  -k python3 --language python --cwd .

## make pretrained: retrain the world-split classifier (03) and the embedded segmenter (06); replace spurnb/assets/{world-classifier,segmenter}
pretrained: $(STAMP)
	mkdir -p runs/cpu
	cd nbs && for nb in 03_erm 06_segment; do \
	  ../$(BIN)/papermill $$nb.ipynb ../runs/cpu/$$nb.ipynb -p profile cpu -p retrain True -k python3 --language python --cwd . \
	  || exit 1; done
	@echo "Shipped new weights; results cached in runs/cache still come from the old ones: make clean-runs reproduce"

# Creates .venv and installs spurnb with its pinned requirements the first time (or when settings.ini changes),
# and MathJax 3 from the npm registry into .venv/mathjax (the site typesets formulas offline).
$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	@echo "Installing spurnb and its requirements into $(VENV) (first run only; a few minutes)..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import spurnb, torch, diffusers, papermill, nbdev, sphinx, myst_nb, selenium" || { echo "install failed"; exit 1; }
	@test -f $(VENV)/mathjax/node_modules/mathjax/es5/tex-chtml.js || \
	  npm install --prefix $(VENV)/mathjax --no-save --no-audit --no-fund --loglevel=error mathjax@3.2.2 >/dev/null || \
	  { echo "MathJax install failed: needs npm (Node.js) and the npm registry"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

## make export: notebooks -> package, then strip notebook outputs/metadata (do this before committing)
export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

## make sync-check: fail if nbdev_export or nbdev_clean would change any file
sync-check: $(STAMP)
	@before=$$(cat nbs/*.ipynb spurnb/*.py | sha256sum); \
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean; \
	after=$$(cat nbs/*.ipynb spurnb/*.py | sha256sum); \
	if [ "$$before" != "$$after" ]; then \
	  echo "nbdev_export/nbdev_clean changed files: the package or notebooks were out of sync (run 'make export' and commit)"; \
	  exit 1; fi; echo "notebooks and package in sync"

clean-runs:
	rm -rf runs/
