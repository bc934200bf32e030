# The two commands: `make book` and `make test`. Each sets itself up first.
#   make reproduce PROFILE=smoke|quick|paper|auto [JOBS=n] [SET="name=value ..."]
#                                                  re-run every notebook in place
#   make book                                      reproduce (profile auto), then build the HTML
#   make html                                      build the HTML from the stored outputs
#   make test                                      unit tests, nbval on every notebook (smoke),
#                                                  then the built book in headless chromium
#   make test-floor                                the same at the oldest versions allowed

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= auto
# notebooks run at once by `make reproduce` (on a GPU machine, 4: the CPU-bound ones beside)
JOBS ?= 1
# notebook parameters over the profile's, as `name=value` words (Python literals without
# spaces, strings in double quotes): SET='download=True variants=["stable"]'
SET ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MathJax, served by the book itself (no CDN: the book and its browser test work offline),
# from the npm registry's tarball, checked against the registry's published hash
MATHJAX := book/_vendor/mathjax/tex-mml-chtml.js
MATHJAX_URL := https://registry.npmjs.org/mathjax/-/mathjax-3.2.2.tgz
MATHJAX_SHA256 := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09

.PHONY: setup reproduce book html test test-floor clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

# PROFILE=auto leaves F1LIB_PROFILE as the caller set it (else: paper on CUDA, quick on CPU)
reproduce: $(STAMP)
	$(BIN)/python -m f1lib.reproduce --profile $(PROFILE) --jobs $(JOBS) $(foreach s,$(SET),--set '$(s)')

book: reproduce html

# the HTML from the notebooks' stored outputs, without re-running them
html: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build -W --keep-going --all book/

$(MATHJAX):
	mkdir -p $(dir $@)
	curl -sSfL $(MATHJAX_URL) -o $(dir $@)mathjax.tgz
	$(BIN)/python -c "import hashlib, sys; h = hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest(); sys.exit(h != sys.argv[2] and f'mathjax.tgz: sha256 {h}, expected {sys.argv[2]}')" $(dir $@)mathjax.tgz $(MATHJAX_SHA256)
	tar xzf $(dir $@)mathjax.tgz -C $(dir $@) --strip-components=2 package/es5
	rm $(dir $@)mathjax.tgz

test: $(STAMP)
	$(BIN)/python -m pytest tests
	F1LIB_PROFILE=smoke $(BIN)/python -m pytest --nbval --nbval-current-env book/
	$(MAKE) html
	F1LIB_BROWSER=required $(BIN)/python -m pytest tests/test_browser.py

# `make test` in .venv-floor, at the lowest versions that pyproject.toml allows (uv's
# lowest-direct resolution: torch 2.2, pandas 2.2, ...), for this Python: 5.5 GB installed
FLOOR := .venv-floor
test-floor:
	$(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet uv
	$(FLOOR)/bin/uv pip install --quiet --python $(FLOOR)/bin/python --resolution lowest-direct \
		-e ".[all]"
	touch $(FLOOR)/.installed
	$(MAKE) test VENV=$(FLOOR)

clean:
	rm -rf _build
