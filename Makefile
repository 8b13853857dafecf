# topod: see README.md. `make test` passes the tests on a fresh machine.
SHELL := /bin/bash
export PATH := $(CURDIR)/bin:$(PATH)
export GOBIN := $(CURDIR)/bin

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

.PHONY: all build test bench proto tools-proto vet fmt fmt-check clean

all: build

build:
	go build -o bin/ ./cmd/...

# bin/minio is the MinIO server the s3blob tests run as a separate process
# (AGPL: never imported). Building it takes a few minutes; it is cached in bin/.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
bin/minio:
	GOBIN=$(CURDIR)/bin go install github.com/minio/minio@$(MINIO_VERSION)

bin/protoc-gen-go:
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

bin/protoc-gen-go-grpc:
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# protoc comes from Debian's protobuf-compiler, installed when missing.
tools-proto: bin/protoc-gen-go bin/protoc-gen-go-grpc
	@command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }

# proto regenerates the checked-in Go code from proto/.
proto: tools-proto
	protoc -I proto --go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/topod/v1/topod.proto

# test runs every test with the race detector: Vitess's own topo conformance
# suite through the plugin against topod on bolt and on a real (embedded)
# etcd, the backend conformance suite, and the fault and bad-input tests.
test: fmt-check vet bin/minio
	go test -race -count=1 -timeout 30m ./...

# bench compares the plugin on topod-on-etcd with Vitess's etcd2 on the same
# etcd, and the backends on their own.
bench:
	go test -run '^$$' -bench . -benchmem ./pkg/topoplugin/ ./pkg/kv/...

vet:
	go vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -l -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

clean:
	rm -rf bin/ .cache/
