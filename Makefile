# sandpool: `make run` starts a gVisor sandbox and runs Python in it;
# `make test` runs vet, staticcheck and every test, under runc and runsc.
# Both install what is missing and build the image first (once; the image
# is cached by a hash of its inputs).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
# The podman bindings need these build tags (no gpgme, no btrfs headers).
TAGS := remote,containers_image_openpgp,exclude_graphdriver_btrfs
export GOFLAGS := -tags=$(TAGS)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: run test test-inproc build image example-image deps bench fuzz soak battery sweep clean

run: deps image
	bin/sandpool exec --runtime runsc -c 'import platform, numpy as np; print("Python", platform.python_version(), "in a", platform.release(), "kernel; sum(range(100)) =", np.arange(100).sum())'

test: deps image
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt: $$unformatted"; exit 1; fi
	go vet ./...
	staticcheck ./...
	SANDPOOL_REQUIRE_PODMAN=1 go test -race -count=1 -timeout 30m ./...; status=$$?; scripts/sweep.sh || status=1; exit $$status
	@# A short fuzz run of the agent frame decoder and paths (every target's
	@# seed corpus already ran above; `make fuzz` runs all of them longer).
	for f in FuzzFrameReader FuzzReadMsg FuzzSplitPathSegments; do go test -run '^$$' -fuzz "^$$f\$$" -fuzztime 10s ./sandbox/agentproto/ || exit 1; done

# The surface tests over the in-process engine (real agents on the host's
# python3, no podman): api, WebSocket, MCP and tools, with the golden files
# (go test ... -update rewrites them), and the hardening tests of the HTTP
# layer in front of the pools; those of them that need podman skip. They
# also run in `make test`.
test-inproc:
	go test -race -count=1 ./internal/inproc/
	go test -race -count=1 -run 'Inproc|Golden|^TestF[0-9]|^TestServerClose' ./api/ ./tools/ ./tools/mcp/

bench: deps image
	go test -count=1 -run '^$$' -bench 'ExecuteTiny|PodmanExecBaseline' -benchtime 1000x ./sandbox/podman/
	go test -count=1 -run '^$$' -bench 'CreateReady|IdleMemory' -benchtime 5x ./sandbox/podman/
	go test -count=1 -run '^$$' -bench 'FirstExecution' -benchtime 20x -timeout 30m ./pool/
	go test -count=1 -run '^$$' -bench 'Burst' -benchtime 1x -timeout 30m ./pool/
	go test -count=1 -run '^$$' -bench 'ExecuteHTTP' -benchtime 500x -timeout 20m ./api/
	go test -count=1 -run '^$$' -bench 'FirstRequestHTTP' -benchtime 20x -timeout 20m ./api/
	go test -count=1 -run '^$$' -bench 'ConcurrentHTTP' -benchtime 3200x -timeout 20m ./api/
	go test -count=1 -run '^$$' -bench 'WSFirstChunk' -benchtime 25x -timeout 20m ./api/
	go test -count=1 -run '^$$' -bench 'WSThroughput' -benchtime 3x -timeout 20m ./api/
	go test -count=1 -run '^$$' -bench 'MCPExecute' -benchtime 500x -timeout 20m ./tools/mcp/
	go test -count=1 -run '^$$' -bench 'MCPFirstCall' -benchtime 20x -timeout 20m ./tools/mcp/
	go test -count=1 -run '^$$' -bench 'CustomGET' -benchtime 2000x -timeout 20m ./api/

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/sandpool-agent ./cmd/sandpool-agent
	CGO_ENABLED=0 go build -trimpath -o bin/sandpool-runsc ./cmd/sandpool-runsc
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/sandpool ./cmd/sandpool

image: build
	bin/sandpool image build

# The example custom-container image (examples/custom-container); the
# tests build it themselves too.
example-image: deps
	examples/custom-container/build.sh

# The soak: REST, WebSocket and MCP clients against `sandpool serve` for
# SOAK (loopback only); then the escape-and-abuse battery's outcome table.
SOAK ?= 3m
soak: deps image
	SANDPOOL_SOAK=$(SOAK) go test -count=1 -v -run '^TestSoak$$' -timeout 30m ./cmd/sandpool/

battery: deps image
	SANDPOOL_BATTERY_REPORT=$(CURDIR)/battery-report.md go test -count=1 -v -timeout 30m ./internal/battery/ | grep -E '^(---|ok|FAIL)|UNSAFE|EGRESS'
	@cat battery-report.md

# Every fuzz target, FUZZTIME each (the first run builds instrumented
# binaries of pool and api, a few minutes).
FUZZTIME ?= 60s
fuzz:
	go test -run '^$$' -fuzz '^FuzzParseIdentifier$$' -fuzztime $(FUZZTIME) ./pool/
	go test -run '^$$' -fuzz '^FuzzParseExec$$' -fuzztime $(FUZZTIME) ./api/
	go test -run '^$$' -fuzz '^FuzzFileNames$$' -fuzztime $(FUZZTIME) ./api/
	for f in FuzzFrameReader FuzzReadMsg FuzzSplitPathSegments; do go test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./sandbox/agentproto/ || exit 1; done

deps:
	scripts/deps.sh

sweep:
	scripts/sweep.sh

clean:
	rm -rf bin
