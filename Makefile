# Everything installs from the project's own files: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
REQS_HASH := $(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(REQS_HASH)
NODE_STAMP := node_modules/.installed

.PHONY: venv azurite test lint typecheck docs unit format clean demo bench bench-all bench-events bench-scale local soak

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# Azurite, the Table Storage emulator the state store tests run against (pinned in package-lock.json).
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

azurite: $(NODE_STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy provisioning simulators function_app.py bench tests

## The docs (docs/, mkdocs.yml) built in strict mode: a link to a page or an anchor that does not exist
## fails. Built into a temporary folder and thrown away; its warnings are shown only when the build fails
## (mkdocs --quiet would also hide the warnings that --strict counts). NO_MKDOCS_2_WARNING: Material's
## end-of-life banner, printed on every build.
docs: venv
	@site=$$(mktemp -d) && log=$$(mktemp) && \
	if NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir "$$site" >"$$log" 2>&1; \
	then rm -rf "$$site" "$$log"; echo "docs: mkdocs build --strict passed"; \
	else grep -v '^INFO ' "$$log"; rm -rf "$$site" "$$log"; exit 1; fi

## The one test command: lint, types, the docs, then every test (unit, integration, end to end, docs).
test: lint typecheck docs azurite
	$(PY) -m pytest -q

unit: venv
	$(PY) -m pytest -q tests/unit

## The main job on one machine: Graph and Druva simulators, the real CLI, embedded SQLite state.
demo: venv
	$(PY) -m simulators.demo

## Timings are figures, not tests: the end-to-end import of 50,000 users, then an incremental sync.
bench: venv
	$(PY) -m bench.pipeline

## The event path on the local Functions host: single changes, a burst of new hires, webhook load; then
## the same path on the production realism profile (changes readable late, notifications late or lost).
bench-events: venv
	$(PY) -m bench.events --realism $(or $(REALISM),both)

## 90 simulated days of Entra changes, expiries and outages on the local host, checked continuously.
## In-process transport (no sockets under the product's clients); the 14-day soak in `make test` keeps
## loopback HTTP.
soak: venv
	$(PY) -m simulators.soak --days 90 --transport in-process --realism $(or $(REALISM),production)

## The app on this machine: the local Functions host and the simulators; Ctrl-C stops everything.
LOCAL_REALISM ?= kind
local: venv
	$(PY) -m simulators.localapp --realism $(LOCAL_REALISM)

## Every benchmark: the pipeline, then Graph, Druva and the state stores on their own.
bench-all: bench bench-events azurite
	$(PY) -m bench.graph
	$(PY) -m bench.druva
	$(PY) -m bench.state

## Long passes at scale: a 200,000-account full reconciliation (peak RSS), an import with no latency,
## and an import against a rate-limited Druva (wall time against the bound, ratio to a sequential script).
bench-scale: venv
	$(PY) -m bench.scale

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis .provisioning

## Security rules for infra/ with checkov, in its own venv: heavy, so not part of `make test`.
# --skip-download: no call to the Prisma Cloud API; skips in the templates use CKV_ ids, which need no mapping.
# --skip-path: checkov's Bicep parser does not know the `extension` statement and would report a parsing
#   error for the Graph module; that module holds only Microsoft.Graph resources, for which checkov has
#   no rules. tests/infra parses and checks it with tree-sitter instead.
# Each deliberate exception is a `// checkov:skip=CKV_...: reason` comment in the resource it concerns.
INFRA_VENV      := .venv-infra
CHECKOV_VERSION := 3.3.30
CHECKOV_STAMP   := $(INFRA_VENV)/.checkov-$(CHECKOV_VERSION)

.PHONY: infra-check

$(CHECKOV_STAMP):
	@test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@rm -f $(INFRA_VENV)/.checkov-* && touch $@

infra-check: $(CHECKOV_STAMP)
	$(INFRA_VENV)/bin/checkov --framework bicep -d infra --compact --skip-download \
		--skip-path 'infra/modules/graph-app-roles\.bicep'
