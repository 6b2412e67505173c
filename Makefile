# logpump: common tasks. `make test` is what CI runs (through .ci/run).
GO ?= go
FUZZTIME ?= 10s

.PHONY: build demo test unit e2e fuzz vet bench clean

build:
	$(GO) build -trimpath -o logpump ./cmd/agent

demo:
	$(GO) run ./cmd/agent demo

## test: everything a change must pass: vet, unit tests under the race
## detector, short fuzzing of every parser and splitter, and the end-to-end
## suite against a real OpenTelemetry Collector receiver.
test: vet unit fuzz e2e

vet:
	$(GO) vet ./...
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$bad" ]; then echo "gofmt needed:"; echo "$$bad"; exit 1; fi

unit:
	$(GO) test -race -count=1 ./...

e2e:
	cd test/e2e && $(GO) test -count=1 -timeout 20m ./...

# fuzz runs every Fuzz target of the module for FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) ./.ci/fuzz

bench:
	./bench/run.sh

clean:
	rm -f logpump
