# calico-cni-sync. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
# The release version lives in VERSION, and only there: the binary, the
# image's tag and label, and the manifests' image tag follow it (a test
# checks that they agree).
VERSION := $(shell cat VERSION)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
GOLANGCI_LINT_VERSION := v2.15.0

# The local control plane the integration tests and the demo run on, built
# from Go modules (test/tools) into test/bin. Make rebuilds a binary only
# when the tools module changes.
CP_BIN := test/bin
CP_DEPS := test/tools/go.mod test/tools/go.sum
CONTROL_PLANE := $(CP_BIN)/etcd $(CP_BIN)/kube-apiserver $(CP_BIN)/kube-controller-manager $(CP_BIN)/kube-scheduler $(CP_BIN)/kubectl $(CP_BIN)/crictl
# The real node test/realnode runs: a kubelet (from the same tools module as
# the control plane) and containerd with ctr and its runc shim (a module of
# their own, test/tools/containerd, so they never move the control plane's
# dependencies). runc and the CNI plugins come from Debian (node-packages).
CTRD_DEPS := test/tools/containerd/go.mod test/tools/containerd/go.sum
NODE := $(CP_BIN)/kubelet $(CP_BIN)/containerd $(CP_BIN)/ctr $(CP_BIN)/containerd-shim-runc-v2
# crictl (cri-tools), the CRI client test/runtime queries containerd with,
# has a module of its own: its dependencies never move the control plane's.
CRI_DEPS := test/tools/cri/go.mod test/tools/cri/go.sum

.PHONY: help build image-binary image control-plane node test-deps test unit lint fuzz bench bench-scale soak demo clean

help:
	@echo "make demo           run the whole story on a local control plane (no cluster needed)"
	@echo "make test           vet, race detector, unit, integration and real-node tests (builds and installs what they need)"
	@echo "make lint           golangci-lint $(GOLANGCI_LINT_VERSION)"
	@echo "make fuzz           run every fuzz target briefly (a count of inputs each)"
	@echo "make bench          benchmarks against the local control plane"
	@echo "make bench-scale    N real agents on one control plane, for N in $(SCALE_N)"
	@echo "make soak           the soak test for $(SOAK) with the agent as it ships (make test runs 60 s of it)"
	@echo "make build          bin/calico-cni-sync"
	@echo "make image-binary   the static binary the Dockerfile builds"
	@echo "make image          the image as an archive: $(IMAGE_ARCHIVE) ($(IMAGE_PLATFORMS))"
	@echo "make node           kubelet, containerd, ctr and the runc shim into test/bin (the real node)"
	@echo "make control-plane  etcd, kube-apiserver, kube-controller-manager, kubectl, crictl into test/bin"

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/calico-cni-sync ./cmd/calico-cni-sync

# The same flags as the Dockerfile's build stage.
image-binary:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/calico-cni-sync-static ./cmd/calico-cni-sync

# The image the manifests run, without a container engine: the static
# binary as the only layer on an empty base, for each platform, written as
# an OCI image archive that `ctr -n k8s.io images import` loads on a node and
# `crane push` sends to a registry. The Dockerfile describes the same image
# for those with an engine (test/realnode checks that the two agree).
IMAGE ?= calico-cni-sync
IMAGE_ARCHIVE := bin/calico-cni-sync-$(VERSION).oci.tar
IMAGE_PLATFORMS := linux/amd64 linux/arm64
IMAGE_USER := 65532:65532
image: $(CP_BIN)/imagebuild
	@rm -rf bin/image
	set -e; for p in $(IMAGE_PLATFORMS); do \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/image/$${p/\//-}/calico-cni-sync ./cmd/calico-cni-sync; \
	done
	$(CP_BIN)/imagebuild -o $(IMAGE_ARCHIVE) --tag $(IMAGE):$(VERSION) \
		$(foreach p,$(IMAGE_PLATFORMS),--rootfs $(p)=bin/image/$(subst /,-,$(p))) \
		--entrypoint '["/calico-cni-sync"]' --user $(IMAGE_USER) \
		--label org.opencontainers.image.title=calico-cni-sync \
		--label org.opencontainers.image.version=$(VERSION) \
		--label org.opencontainers.image.revision=$(REVISION) \
		--label org.opencontainers.image.licenses=Apache-2.0
	@echo ">> $(IMAGE_ARCHIVE): $(IMAGE):$(VERSION) for $(IMAGE_PLATFORMS)"

IMG_DEPS := test/tools/image/go.mod test/tools/image/go.sum test/tools/image/main.go
$(CP_BIN)/imagebuild: $(IMG_DEPS)
	cd test/tools/image && $(GO) build -o ../../bin/imagebuild .

control-plane: $(CONTROL_PLANE)

$(CP_BIN)/etcd: $(CP_DEPS)
	@echo ">> building etcd (first build of the control plane takes several minutes)"
	cd test/tools && $(GO) build -o ../bin/etcd go.etcd.io/etcd/server/v3
$(CP_BIN)/kube-apiserver: $(CP_DEPS)
	@echo ">> building kube-apiserver"
	cd test/tools && $(GO) build -o ../bin/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
$(CP_BIN)/kube-controller-manager: $(CP_DEPS)
	@echo ">> building kube-controller-manager"
	cd test/tools && $(GO) build -o ../bin/kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
$(CP_BIN)/kube-scheduler: $(CP_DEPS)
	@echo ">> building kube-scheduler"
	cd test/tools && $(GO) build -o ../bin/kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
$(CP_BIN)/kubectl: $(CP_DEPS)
	@echo ">> building kubectl"
	cd test/tools && $(GO) build -o ../bin/kubectl k8s.io/kubernetes/cmd/kubectl
$(CP_BIN)/crictl: $(CRI_DEPS)
	@echo ">> building crictl"
	cd test/tools/cri && $(GO) build -o ../../bin/crictl sigs.k8s.io/cri-tools/cmd/crictl

node: $(NODE)

$(CP_BIN)/kubelet: $(CP_DEPS)
	@echo ">> building kubelet (the first build takes 10 to 20 minutes)"
	cd test/tools && $(GO) build -o ../bin/kubelet k8s.io/kubernetes/cmd/kubelet
# No btrfs headers here, so no btrfs snapshotter; containerd runs overlayfs.
CTRD_BUILD := CGO_ENABLED=0 $(GO) build -tags no_btrfs,urfave_cli_no_docs
$(CP_BIN)/containerd: $(CTRD_DEPS)
	@echo ">> building containerd"
	cd test/tools/containerd && $(CTRD_BUILD) -o ../../bin/containerd github.com/containerd/containerd/v2/cmd/containerd
$(CP_BIN)/ctr: $(CTRD_DEPS)
	cd test/tools/containerd && $(CTRD_BUILD) -o ../../bin/ctr github.com/containerd/containerd/v2/cmd/ctr
$(CP_BIN)/containerd-shim-runc-v2: $(CTRD_DEPS)
	cd test/tools/containerd && $(CTRD_BUILD) -o ../../bin/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2

# What the tests take from Debian: containerd (test/runtime), runc, the
# reference CNI plugins, iptables and nftables (the real node), and promtool
# (test/monitoring), unpacked from the prometheus package rather than
# installed, so that no Prometheus service starts. Installed when missing
# (as root, as CI runs); nothing else on the machine is changed.
DEBIAN_PACKAGES := containerd runc containernetworking-plugins iptables nftables
PROMTOOL_DIR := $(CP_BIN)/debian
test-deps: $(PROMTOOL_DIR)/promtool
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo ">> apt-get install$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
$(PROMTOOL_DIR)/promtool:
	@echo ">> promtool from Debian's prometheus package"
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	apt-get update -qq; (cd "$$tmp" && apt-get download -qq prometheus && dpkg-deb -x prometheus_*.deb root); \
	mkdir -p $(PROMTOOL_DIR) && cp "$$tmp/root/usr/bin/promtool" $(PROMTOOL_DIR)/promtool

# Everything the tests need is built or installed first: a fresh machine
# with Go needs no other step. The real-node tests deploy the image archive,
# and run alone: their node uses the machine's /etc/cni/net.d and the fixed
# host paths of the kubelet and containerd, which test/runtime's containerd
# shares.
test: export PATH := $(CURDIR)/$(PROMTOOL_DIR):$(PATH)
test: control-plane node test-deps image
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v /test/realnode)
	$(GO) test -race -count=1 -timeout 30m ./test/realnode/

unit:
	$(GO) test -race -count=1 ./cniconf/... ./cmd/... ./sync/...

lint:
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

# Fuzzing runs for a number of inputs, not a duration: Go 1.26's fuzz
# coordinator can fail a run with "context deadline exceeded" when a duration
# ends (golang/go#75804). Every fuzz target of every package is run, found
# with `go test -list`, so a new one cannot be left out. 200000 inputs take
# 5 to 20 s a target on 2 cores.
FUZZEXECS ?= 200000
# Targets whose inputs cost more run fewer: a manifest seed is 20 KB, and
# --configmap-file and a CNI directory to discover are written to files
# first (about 600 to 1000 inputs a second).
FUZZSLOW ?= FuzzParseManifest FuzzLoadConfigMapFile FuzzDiscover
FUZZSLOWEXECS ?= 20000
FUZZMINIMIZE ?= 2s
fuzz:
	set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' cmd cniconf sync test | xargs -n1 dirname | sort -u); do \
		list=$$($(GO) test -list '^Fuzz' ./$$dir); \
		for t in $$(echo "$$list" | grep '^Fuzz'); do \
			n=$(FUZZEXECS); case " $(FUZZSLOW) " in *" $$t "*) n=$(FUZZSLOWEXECS);; esac; \
			echo ">> $$dir $$t: $$n inputs"; \
			$(GO) test ./$$dir -run '^$$' -fuzz "^$$t\$$" -fuzztime $${n}x -fuzzminimizetime $(FUZZMINIMIZE); \
		done; \
	done

# Many real agents on one control plane (test/scale), one run per N: a table
# per N (also in bench-scale.out) and scale-<N>.json. Run as root: each agent
# gets a user id of its own (the kernel allows 128 inotify instances a user).
# IDLE=10m measures idle at the default periods.
SCALE_N ?= 50 100 200
bench-scale: control-plane
	set -o pipefail; for n in $(SCALE_N); do N=$$n SCALE_JSON=scale-$$n.json $(GO) test -run '^$$' -bench BenchmarkScale -benchtime 1x -timeout 30m ./test/scale/ || exit 1; done | tee bench-scale.out

demo: build control-plane
	@echo ">> running the demo (Ctrl-C tears everything down)"
	$(GO) run ./test/demo --binary bin/calico-cni-sync --fixture test/testdata/fixtures/calico-config-v2.6-etcd.yaml

# Benchmarks against the local control plane; figures go to docs/BENCHMARKS.md.
# The agent runs as the DaemonSet runs it. The summary at the end is the
# headline: per ConfigMap change, on each install, the agent against the
# floor measured in the same run (the paired difference agent - floor, each
# one's event -> rename, CPU per change and its ratio), then the idle
# agent's requests per hour. BenchmarkRolloutWaves times a rollout in waves
# on 12 agents, and a bad revision's rollback and halt, and counts what its
# gate costs. report --stuck on 100 000 pods
# (BenchmarkStuck100k) is not part of it: see docs/BENCHMARKS.md.
BENCH_E2E ?= BenchmarkConfigMapChange|BenchmarkIdleAgent|BenchmarkCommands|BenchmarkTokenSecretReplacedToDisk|BenchmarkEditToCondition|BenchmarkGuard|BenchmarkRolloutWaves
bench: control-plane
	set -o pipefail; $(GO) test -run '^$$' -bench '$(BENCH_E2E)' -benchtime 1x -timeout 40m ./test/e2e/ | tee bench.out
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./test/runtime/ | tee -a bench.out
	@echo; echo ">> summary (also in bench.out)"; grep -E '^(configmap-change|idle|command) ' bench.out

# The soak test (TestSoak) for SOAK: random ConfigMap edits, token Secret
# regenerations, hand edits, CNI directory removals and API server restarts,
# with the agent's goroutines, fds and RSS sampled. Outside the race detector
# (the test builds the agent as it ships), so the RSS means something; the
# summary it logs goes to soak.out. make test runs 60 s of it under -race.
SOAK ?= 10m
SOAK_TIMEOUT ?= 45m
soak: control-plane
	set -o pipefail; CALICO_CNI_SYNC_SOAK=$(SOAK) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout $(SOAK_TIMEOUT) ./test/e2e/ | tee soak.out

clean:
	rm -rf bin
