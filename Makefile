# The same commands for people and CI. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Say the auth mode out loud: left unset, a local Ray may turn token auth on and lock other shells out.
export RAY_AUTH_MODE ?= disabled
# Ray's usage-stats prompt and upload do nothing useful here.
export RAY_USAGE_STATS_ENABLED ?= 0
# The head's CPUs for `make up` (default: every core this process may use).
RAY_CPUS ?=

.PHONY: help install up down status check test test-container image bench bench-precision tune sizing lint format tiny-model full-model clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt -e .
	touch $@

install: $(BIN)/.installed  ## make .venv with the pinned dependencies and the project

# sentiment_ops up: the model checked first (seconds, one line), then timed in every runtime and
# precision once per machine (sentiment.tune; skipped once recorded), a head started with ray.env's
# flags unless one runs here, both apps deployed; a head it started is stopped again when a deploy
# fails, so a failed `make up` leaves nothing running.
up: install  ## start a Ray head (if none) with ray.env's fast path and deploy both apps; honours SENTIMENT_MODEL
	@$(BIN)/python -m sentiment_ops up $(if $(RAY_CPUS),--num-cpus=$(RAY_CPUS))

check: install  ## query both running apps over HTTP
	$(BIN)/python test_local_http_endpoint.py

status: install  ## one line per app on the running head (why, when it failed), then Serve's full status
	-$(BIN)/python -m sentiment_ops status
	$(BIN)/serve status

down: install  ## stop Ray (and with it every app, and the HAProxy Ray leaves) on this machine
	$(BIN)/python -m sentiment_ops stop

test: install  ## lint, then run every test tier
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-container: install  ## build both images and test their containers (needs a Docker engine)
	$(BIN)/python -m pytest tests/container -s

image:  ## build the serving image (CPU torch from docker/wheels/ or TORCH_INDEX_URL)
	DOCKER_BUILDKIT=1 docker build --network host --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) \
		-t sentiment-serve:0.1.0 .

lint: install  ## lint and check formatting
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## fix what ruff can
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

tiny-model: install  ## save an untrained tiny DistilBERT to models/tiny (no model hub needed)
	$(BIN)/python -m sentiment.testing tiny models/tiny

full-model: install  ## save an untrained full-size DistilBERT to models/full (benchmarks)
	$(BIN)/python -m sentiment.testing full models/full

clean:  ## remove the venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

bench: install  ## the load benchmark (full-size stand-in model): bench/results/ and docs/performance.md
	$(BIN)/python -m bench --page docs/performance.md

tune: install  ## time every runtime and precision here, record the fastest that agrees with fp32 (SENTIMENT_MODEL)
	$(BIN)/python -m sentiment.tune

bench-precision: install  ## every precision in-process: speed, latency, agreement with fp32 (MODEL=DIR)
	$(BIN)/python -m bench.precision $(if $(MODEL),--model $(MODEL))

sizing: install  ## one replica at 1 to 32 clients (~7 min), then the capacity table (docs/deployment.md, Sizing)
	$(BIN)/python -m bench --concurrency 1,2,4,8,16,32 --seconds 8 --no-peers --out bench/results/scaling
	$(BIN)/python -m bench.capacity --results bench/results/scaling/results.json
