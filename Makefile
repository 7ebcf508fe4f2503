# `make run` and `make test` each do their own set-up on a fresh machine.
PY := .venv/bin/python
VAR ?= var/zone
FRONTENDS ?= 3

.PHONY: setup run test lint format bench clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m zones.lab run --frontends $(FRONTENDS) --dir $(VAR)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) -m bench commit --frontends 3 --clients 64 --seconds 10 --json

clean:
	rm -rf var .venv .setup-stamp zones/api/gen
