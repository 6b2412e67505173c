# logpump: common tasks. `make test` is what CI runs (through .ci/run).
GO ?= go
FUZZTIME ?= 10s
SHELL := /bin/bash
# Lines worth seeing from passing tests: per-case loss/duplicate summaries.
SUMMARY := '^(ok|FAIL|--- FAIL|panic:)|written [0-9]+, delivered|^E2E '

.PHONY: build demo test unit e2e k8s chaos fuzz vet bench clean cross wine-test qemu-test

# As the release binaries are built (.ci/ops.sh): static, no C library to
# load; grpcnotrace leaves out gRPC's request tracing (golang.org/x/net/trace
# and html/template, never served by logpump): 0.6 MiB less RSS.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags grpcnotrace -o logpump ./cmd/agent

demo:
	$(GO) run ./cmd/agent demo

## test: everything a change must pass: vet, unit tests under the race
## detector (the benchmark harness's too), short fuzzing of every parser and
## splitter, and the end-to-end suite against a real OpenTelemetry Collector
## receiver.
test: vet unit fuzz e2e

vet:
	$(GO) vet ./...
	$(GO) -C bench vet ./...
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi

# The benchmark harness (bench/, a module of its own) is tested with the rest.
unit:
	set -o pipefail; { $(GO) test -race -count=1 -v ./... && $(GO) -C bench test -race -count=1 -v ./...; } 2>&1 \
	  | tee unit-test.log | grep -E $(SUMMARY) \
	  || { grep -B5 -A40 -E '^\s*--- FAIL|^panic:' unit-test.log | head -400; exit 1; }

# The TestK8s* tests need a kube-apiserver; `make k8s` runs them.
e2e:
	set -o pipefail; cd test/e2e && $(GO) test -count=1 -timeout 20m -v -skip '^TestK8s' ./... 2>&1 | tee ../../e2e-test.log | grep -E $(SUMMARY) \
	  || { grep -B5 -A60 -E '^\s*--- FAIL|^panic:' ../../e2e-test.log | head -400; exit 1; }

## k8s: the tests against a real kube-apiserver and etcd (TestK8s* in
## test/e2e): server-side dry runs of the manifests, the shipped RBAC role,
## pod metadata end to end. Builds the API server and kubectl once into
## $${LOGPUMP_CI_CACHE:-/var/cache/logpump-ci}/k8s-v1.37.2 (see .ci/k8s.sh).
k8s:
	./.ci/k8s.sh

## chaos: the long form of the end-to-end chaos suite (TestChaos, whose short
## form runs in e2e): writers, logrotate, backend outages, restarts and reloads
## for CHAOS in all (each scenario gets an equal share), one after the other.
## CHAOS_RUN=outage-live picks scenarios (a regexp), LOGPUMP_CHAOS_SEED=N
## replays a run, LOGPUMP_CHAOS_REPORT_ONLY=1 reports instead of failing.
CHAOS ?= 30m
CHAOS_RUN ?=
chaos:
	set -o pipefail; cd test/e2e && LOGPUMP_CHAOS=$(CHAOS) LOGPUMP_REQUIRE_LOGROTATE=1 \
	  $(GO) test -count=1 -timeout 3h -v -run 'TestChaos/$(CHAOS_RUN)' . 2>&1 | tee chaos-test.log | grep -E $(SUMMARY) \
	  || { grep -B5 -A60 -E '^\s*--- FAIL|^panic:' chaos-test.log | head -400; exit 1; }

# fuzz runs every Fuzz target of the module for FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) ./.ci/fuzz

bench:
	./bench/run.sh

## cross: vet and build for windows/amd64, darwin/amd64, darwin/arm64 and
## linux/arm64, and run the tailer's tests with the portable (fsnotify)
## watcher macOS and Windows use (CI runs it in .ci/ops.sh).
cross:
	./.ci/platforms.sh cross

## wine-test: the Windows test binaries under Wine (installs wine64 and
## mingw-w64 when missing); qemu-test: the linux/arm64 unit tests under
## qemu-user (installs qemu-user-static). Not in CI: see .ci/platforms.sh.
wine-test:
	./.ci/platforms.sh wine

qemu-test:
	./.ci/platforms.sh qemu

clean:
	rm -f logpump
