# The two commands: `make book` and `make test`. Each sets itself up first.
#   make reproduce PROFILE=smoke|quick|paper|auto   re-run every notebook in place
#   make book                                      reproduce (profile auto), then build the HTML
#   make test                                      unit tests, then nbval on every notebook (smoke)

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= auto
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(wildcard book/*.ipynb)

.PHONY: setup reproduce book test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

# PROFILE=auto leaves F1LIB_PROFILE as the caller set it (else: paper on CUDA, quick on CPU)
reproduce: $(STAMP)
	@set -e; for nb in $(NOTEBOOKS); do \
		echo "== $$nb (profile $(PROFILE))"; \
		$(if $(filter-out auto,$(PROFILE)),F1LIB_PROFILE=$(PROFILE)) \
		$(BIN)/papermill "$$nb" "$$nb" --cwd book --kernel python3 --log-level WARNING; \
	done
	$(BIN)/python -m f1lib.ledger

book: reproduce
	$(BIN)/jupyter-book build -W --keep-going --all book/

test: $(STAMP)
	$(BIN)/python -m pytest tests
	F1LIB_PROFILE=smoke $(BIN)/python -m pytest --nbval --nbval-current-env book/

clean:
	rm -rf _build
