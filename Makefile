# voxbench — the two entry points are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.voxbench-installed
PYTEST_ARGS ?=
LOAD_PYTEST_ARGS ?=
DEMO_ARGS ?=
REHEARSAL_ARGS ?=
PIN_OFF_CPU0 := $(shell [ "$$(nproc)" -gt 1 ] && echo "taskset -c 1-$$(($$(nproc) - 1))")

.PHONY: help demo test rehearsal lint venv system docker images schemas clean

help:
	@echo "make demo   run bench.yml end to end on the embedded default (stand-ins on this machine)"
	@echo "make test   install what the tests need and run the whole suite"
	@echo "make rehearsal  the production route on test hosts named titan and panda (setup.yml, two bench.yml runs)"
	@echo "make lint   ruff and mypy (strict on bench_py)"
	@echo "make schemas  generate the run files' JSON Schemas from their models (bench_py/schemas, docs/schemas)"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "voxbench needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"
	# torch first and by exact version: the constraints name the CPU build for this machine.
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e '.[judge,test]'
	touch $@

venv: $(STAMP)

system:
	@bash scripts/ensure-system.sh

docker: system
	@bash scripts/ensure-docker.sh

images: venv docker
	$(BIN)/voxbench images build

# The suite, then its gate, pipeline and fault tests again beside an unrelated busy process (a user's
# machine is rarely idle): a few minutes, not the whole suite twice.
test: venv docker
	$(BIN)/pytest $(PYTEST_ARGS)
	$(BIN)/pytest --background-load -m under_load $(LOAD_PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: venv docker
	$(BIN)/voxbench demo prepare
	# Phase A0 on the film stand-in: rank SAMANTHA's clips from the film and its <v> subtitles.
	$(BIN)/voxbench demo film
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PIN_OFF_CPU0) $(BIN)/ansible-playbook extract.yml -e film=$(CURDIR)/.cache/demo-film/film.mp4 \
	  -e subtitles=$(CURDIR)/.cache/demo-film/film.voice.vtt -e speaker=SAMANTHA -e voxbench_extract_out_dir=$(CURDIR)/runs/extract-demo
	# The co-tenant stand-in has CPU 0 to itself (inventory/local): keep this controller off it too.
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PIN_OFF_CPU0) $(BIN)/ansible-playbook bench.yml -e gemma_mode=parallel $(DEMO_ARGS)

# The production route on this machine: titan.example's inventory on two systemd+sshd test hosts.
rehearsal: venv docker
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/voxbench rehearsal $(REHEARSAL_ARGS)

# The schemas are generated from the pydantic models in bench_py/documents/models.py; a test keeps
# the committed files equal to what this writes.
schemas: venv
	$(BIN)/python -m bench_py.documents.schemas

clean:
	rm -rf $(VENV) .pytest_cache
