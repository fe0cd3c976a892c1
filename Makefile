# tenant-registry — every target runs on Node 24. When the host's Node is older,
# a pinned Node (see .node-version) is installed from the npm registry into
# .tools/ and put first on PATH; nothing else is downloaded.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

NODE_VERSION := $(shell cat .node-version)
NODE_MAJOR := $(firstword $(subst ., ,$(NODE_VERSION)))
HOST_NODE_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
HOST_PLATFORM := $(shell node -p 'process.platform + "-" + process.arch' 2>/dev/null || echo linux-x64)
NODE_PREFIX := $(CURDIR)/.tools/node-$(NODE_VERSION)
NODE_PKG := node-$(HOST_PLATFORM)

ifeq ($(shell test $(HOST_NODE_MAJOR) -ge $(NODE_MAJOR) && echo host),host)
NODE_STAMP :=
else
NODE_BIN := $(NODE_PREFIX)/node_modules/$(NODE_PKG)/bin
NODE_STAMP := $(NODE_BIN)/node
export PATH := $(NODE_BIN):$(PATH)
endif
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

DEPS_STAMP := node_modules/.package-lock.json
# The Node flags of src/main.ts's `#!/usr/bin/env -S node …` line, which the installed
# command runs with: `make start` and `make dev` run the server as shipped.
NODE_FLAGS := $(shell sed -n '1s|^\#!/usr/bin/env -S node *||p' src/main.ts)
MAIN := node $(NODE_FLAGS) dist/bin/main.js

.PHONY: help node install generate check-generated lint format typecheck build prune-dist FORCE start dev dev-watch \
        protos dist pack test test-short bench migrate-up migrate-version migrate-down migrate-down-all \
        migrate-create clean

# The help texts may name this Makefile's variables ($(NODE_MAJOR)); they are shown expanded.
# (Expanded only when `make help` runs.)
HELP_VARIABLES = $(sort $(foreach v,$(.VARIABLES),$(if $(filter file,$(origin $(v))),$(v))))

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}' \
	  | sed -e 's/^//' $(foreach v,$(HELP_VARIABLES),-e 's|$$($(v))|$(subst |,\|,$($(v)))|g')

$(NODE_PREFIX)/node_modules/$(NODE_PKG)/bin/node:
	@echo "host node is $(HOST_NODE_MAJOR).x; installing node $(NODE_VERSION) ($(NODE_PKG)) into .tools/"
	@mkdir -p $(NODE_PREFIX)
	npm install --prefix $(NODE_PREFIX) --no-save --no-package-lock --no-audit --no-fund $(NODE_PKG)@$(NODE_VERSION)
	@touch $@

node: $(NODE_STAMP) ## make sure Node $(NODE_MAJOR) is on PATH
	@echo "node $$(node --version) at $$(command -v node)"

# patches/: fixes to dependencies not yet released upstream. Applied here and in the Dockerfile,
# not from an npm lifecycle script, which the packed artifact would carry to every sibling's
# install (npm asks to approve it). A patch that no longer applies fails the install.
PATCH_PACKAGE := patch-package --error-on-fail --error-on-warn

$(DEPS_STAMP): package.json package-lock.json $(wildcard patches patches/*.patch) | $(NODE_STAMP)
	npm ci --no-audit --no-fund
	$(PATCH_PACKAGE)
	@touch $@

install: $(DEPS_STAMP) ## npm ci (once per lockfile change)

generate: $(DEPS_STAMP) ## regenerate gen/ from proto/
	buf generate

check-generated: $(DEPS_STAMP) ## fail when gen/ differs from what buf generates
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	buf generate --output "$$tmp"; \
	if ! diff -ru gen "$$tmp/gen"; then echo "gen/ is out of date: run 'make generate' and commit" >&2; exit 1; fi; \
	echo "gen/ is up to date"

lint: $(DEPS_STAMP) ## buf lint + format check on proto/
	buf lint --path proto/breakpilot
	buf format --diff --exit-code proto

format: $(DEPS_STAMP) ## format proto/
	buf format -w proto

typecheck: $(DEPS_STAMP) ## tsc --noEmit over src, gen and test
	tsc -p tsconfig.json --noEmit

# Incremental: make skips tsc when no input is newer than the stamp, and tsc recompiles
# only what changed (its state lives in dist/, so deleting dist/ rebuilds everything).
# Outputs whose source is gone are removed, so a deleted module cannot linger in dist/.
BUILD_STAMP := dist/.build-stamp
BUILD_INPUTS := $(shell find src gen test/bench -type f \( -name '*.ts' -o -name '*.json' \) 2>/dev/null) \
  tsconfig.json tsconfig.build.json Makefile
TSC_BUILD := tsc -p tsconfig.build.json --incremental --tsBuildInfoFile dist/.tsbuildinfo

BUILD_LIST := $(sort $(BUILD_INPUTS))
# A deleted source changes the list, not any timestamp: rebuild (and prune) then too.
ifneq ($(BUILD_LIST),$(file < dist/.build-inputs))
$(BUILD_STAMP): FORCE
endif

# The command the artifact runs (package.json "bin": dist/bin/main.js) is one ESM bundle of
# the server and its dependencies, split where main.ts imports a command: resolving and
# loading ~760 modules one by one was half of a cold start (make bench, cold-start). Left
# outside, loaded from node_modules as before: pg, so the OpenTelemetry instrumentation can
# wrap it as it loads, and pg-cursor and pg-query-stream, which reach into pg's own files
# (bundled, they would carry a second copy of them); and the packages that find files beside
# their own code (__dirname): embedded-postgres (its binaries; it stays optional),
# postgres-migrations (its own first migration), pino (its transport workers). A warning
# (an import it cannot resolve is one) fails the build. dist/src remains for the client entry.
BUNDLE_EXTERNAL := pg pg-native pg-cloudflare pg-cursor pg-query-stream embedded-postgres postgres-migrations pino
BUNDLE := rolldown dist/src/main.js --format esm --platform node --dir dist/bin --chunkFileNames '[name].js' \
  $(foreach p,$(BUNDLE_EXTERNAL),--external $(p))

$(BUILD_STAMP): $(BUILD_INPUTS) $(DEPS_STAMP)
	$(TSC_BUILD)
	@$(MAKE) --no-print-directory prune-dist
	@rm -rf dist/bin; $(BUNDLE) > /dev/null 2> dist/.bundle-warnings; status=$$?; cat dist/.bundle-warnings >&2; \
	  if [ $$status -ne 0 ] || [ -s dist/.bundle-warnings ]; then rm -rf dist/bin; exit 1; fi
	@printf '%s' '$(BUILD_LIST)' > dist/.build-inputs
	@touch $@

FORCE:

build: $(BUILD_STAMP) ## compile to dist/ (incremental) and bundle the command into dist/bin/

prune-dist:
	@cd dist && find src gen test -type f 2>/dev/null | while read -r out; do \
	  base=$${out%.map}; base=$${base%.js}; base=$${base%.d.ts}; \
	  case "$$out" in *.json) source="$$out" ;; *) source="$$base.ts" ;; esac; \
	  if [ ! -e "../$$source" ]; then rm -f "$$out"; echo "removed dist/$$out (its source is gone)"; fi; \
	done

# The bundle for other languages: our protos plus exactly the third-party files a
# client needs (the HTTP annotations they import, the error details the server
# sends, health and reflection v1). google/protobuf/* ships with protoc and buf.
PROTO_BUNDLE := proto/breakpilot \
  node_modules/google-proto-files/google/rpc/error_details.proto \
  node_modules/grpc-health-check/proto/health/v1/health.proto \
  node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto
PROTOS_OUT ?= dist/protos
PROTOS_IMAGE ?= dist/tenant-registry.binpb

protos: $(DEPS_STAMP) ## proto bundle for other languages: dist/protos/ (sources) and dist/tenant-registry.binpb (buf image)
	rm -rf $(PROTOS_OUT)
	buf export . $(addprefix --path ,$(PROTO_BUNDLE)) -o $(PROTOS_OUT)
	buf build . $(addprefix --path ,$(PROTO_BUNDLE)) -o $(PROTOS_IMAGE)

dist: build protos ## the artifact: npm pack (server, client entry, migrations, proto bundle; no tests) into dist/
	npm pack --pack-destination dist
	@echo "production install: npm install dist/$$(node -p 'const p=require("./package.json"); p.name+"-"+p.version').tgz --omit=dev --omit=optional"

pack: dist ## the same as make dist (what a sibling installs)

start: build ## run the built server (serve) with the environment exactly as given
	$(MAIN) serve

dev: build ## development server: APP_ENV=dev, embedded PostgreSQL unless DATABASE_URL is set
	APP_ENV=$${APP_ENV:-dev} $(MAIN) serve

dev-watch: build ## make dev, rebuilt (tsc --watch) and restarted (node --watch) on every change
	@$(TSC_BUILD) --watch --preserveWatchOutput & tsc_pid=$$!; \
	trap 'kill $$tsc_pid 2>/dev/null' EXIT; \
	APP_ENV=$${APP_ENV:-dev} node $(NODE_FLAGS) --watch-path=dist/src --watch-path=dist/gen --watch-preserve-output dist/src/main.js serve

test: $(DEPS_STAMP) check-generated lint typecheck build protos ## everything CI runs: drift, lint, typecheck, build, all tests
	vitest run --reporter=default --reporter=json --outputFile.json=.test-results.json

test-short: $(DEPS_STAMP) ## tests that need no database
	vitest run --project unit

bench: build ## load benchmark (BENCH_QUICK=1 for < 2 min): ratios to baselines measured in the same run
	node dist/test/bench/run.js

migrate-up: build ## apply pending migrations to DATABASE_URL
	$(MAIN) migrate up

migrate-version: build ## print the applied schema version
	$(MAIN) migrate version

migrate-down: build ## dev only: revert the latest migration
	$(MAIN) migrate down

migrate-down-all: build ## dev only: revert every migration
	$(MAIN) migrate down-all

migrate-create: build ## add migrations/N_NAME.sql and its down script (NAME=...)
	@test -n "$(NAME)" || { echo "usage: make migrate-create NAME=add_something" >&2; exit 2; }
	$(MAIN) migrate create "$(NAME)"

clean: ## remove build output (keeps .tools and .data)
	rm -rf dist
