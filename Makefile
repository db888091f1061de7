# sc-extension: the one entry point. `make demo` and `make test` set everything up.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)
# Tests find the pinned clients here (never whatever a machine has on its PATH).
export SC_TOOLS_DIR := $(TOOLS)
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help tools build test test-unit lint fmt clippy helm-lint manifests demo e2e bench chaos clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

tools: ## install the pinned helm 3.18 / 4.1, kubectl 1.33 / 1.35 / 1.37 and python tools into .tools/
	@bash scripts/install-tools.sh

build: ## build every binary (sc-agent, sc-job, kubesim)
	$(CARGO) build --workspace --bins

test: tools build ## run the whole test suite (unit, embedded cluster, real helm and kubectl)
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif

fmt: ## format the code
	$(CARGO) fmt --all

lint: tools ## cargo fmt --check, clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean: ## remove build output and installed tools
	$(CARGO) clean
	rm -rf $(TOOLS) .demo
