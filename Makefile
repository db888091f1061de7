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

.PHONY: help tools build test lint fmt chart-check manifests clean demo demo-stop e2e

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

tools: ## install the pinned helm 3.18 / 4.1, kubectl 1.33 / 1.35 / 1.37 and python tools into .tools/
	@bash scripts/install-tools.sh

build: ## build every binary (sc-agent, sc-job, kubesim) and the kubectl plugin link target/debug/kubectl-sc
	$(CARGO) build --workspace --bins
	@ln -sfn sc-agent "$${CARGO_TARGET_DIR:-target}/debug/kubectl-sc"

test: tools build images ## run the whole test suite (unit, embedded cluster, real helm and kubectl, the image archives; the chart runs from them on kubesim)
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif
	@$(MAKE) --no-print-directory images-check

.PHONY: images images-check release
images: ## static sc-agent and sc-job as reproducible OCI image archives in dist/images/ (no container engine)
	@bash scripts/images.sh

images-check: images ## the archives are valid OCI layouts, rebuild to the same bytes, and each entrypoint runs alone as 65532
	@bash scripts/images-check.sh

release: tools images ## dist/: the packaged chart, the image archives, a CycloneDX SBOM and SHA256SUMS
	@bash scripts/release.sh

demo: tools ## build, start the embedded cluster, install the chart with example connections, show the result
	@bash scripts/demo.sh

demo-stop: ## stop the embedded cluster left running by 'make demo'
	@bash scripts/demo.sh stop

e2e: tools build ## the end-to-end scenarios against the cluster of KUBECONFIG (images must be pullable there)
	@bash scripts/e2e.sh

.PHONY: bench
bench: tools ## benchmarks on the embedded cluster with release binaries: bench/RESULTS.md, raw runs in bench/out/
	$(CARGO) build --release --bins
	target/release/sc-bench $(BENCH_ARGS)

.PHONY: chaos
chaos: tools build ## the full chaos suite: 300 connections, faults and 20+ pod kills, 1 and 2 agents (SC_CHAOS_SEED=N replays)
	SC_CHAOS=full $(CARGO) test -p sc-e2e --test chaos -- --nocapture --test-threads=1

fmt: ## format the code
	$(CARGO) fmt --all

lint: tools chart-check ## cargo fmt --check, clippy -D warnings, helm lint, manifest schemas, manifests drift, CI workflows
	$(CARGO) fmt --all -- --check
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	actionlint .github/workflows/*.yml
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(MAKE) --no-print-directory manifests
	@git diff --exit-code -- manifests/ || { echo "manifests/ is out of date with chart/: run 'make manifests' and commit"; exit 1; }

chart-check: tools ## helm lint (helm 3 and 4) and validate rendered manifests against the Kubernetes schemas
	@bash scripts/chart-check.sh

manifests: tools ## render the chart into manifests/sc-extension.yaml for kubectl-only installs
	@mkdir -p manifests
	@{ echo "# Rendered from chart/ by 'make manifests' (helm template sc-extension chart -n sc-system --skip-tests --no-hooks)."; \
	   echo "# Do not edit: change the chart and run 'make manifests'."; \
	   echo "# Install: kubectl create namespace sc-system && kubectl apply -n sc-system -f manifests/sc-extension.yaml"; \
	   helm3 template sc-extension chart -n sc-system --skip-tests --no-hooks; } > manifests/sc-extension.yaml

clean: ## remove build output and installed tools
	$(CARGO) clean
	rm -rf $(TOOLS) .demo

.PHONY: fuzz
FUZZ_TARGETS := request_nested request_flat template kubesim_proto
FUZZ_SECONDS ?= 60
fuzz: ## cargo-fuzz (nightly): each target for FUZZ_SECONDS (default 60); not part of CI. Crashes land in fuzz/artifacts/
	@command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked"; exit 1; }
	cd fuzz && $(CARGO) +nightly fuzz build -s none -a
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  mkdir -p fuzz/corpus/$$t; \
	  (cd fuzz && $(CARGO) +nightly fuzz run -s none -a $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || exit 1; \
	done
