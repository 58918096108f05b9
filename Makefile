# calico-cni-sync. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
GOLANGCI_LINT_VERSION := v2.15.0

# The local control plane the integration tests and the demo run on, built
# from Go modules (test/tools) into test/bin. Make rebuilds a binary only
# when the tools module changes.
CP_BIN := test/bin
CP_DEPS := test/tools/go.mod test/tools/go.sum
CONTROL_PLANE := $(CP_BIN)/etcd $(CP_BIN)/kube-apiserver $(CP_BIN)/kube-controller-manager $(CP_BIN)/kubectl $(CP_BIN)/crictl
# crictl (cri-tools), the CRI client test/runtime queries containerd with,
# has a module of its own: its dependencies never move the control plane's.
CRI_DEPS := test/tools/cri/go.mod test/tools/cri/go.sum

.PHONY: help build image-binary control-plane test unit lint fuzz bench bench-scale soak demo clean

help:
	@echo "make demo           run the whole story on a local control plane (no cluster needed)"
	@echo "make test           vet, race detector, unit and integration tests (builds the control plane)"
	@echo "make lint           golangci-lint $(GOLANGCI_LINT_VERSION)"
	@echo "make fuzz           run each fuzz target briefly"
	@echo "make bench          benchmarks against the local control plane"
	@echo "make bench-scale    N real agents on one control plane, for N in $(SCALE_N)"
	@echo "make soak           the soak test for $(SOAK) with the agent as it ships (make test runs 60 s of it)"
	@echo "make build          bin/calico-cni-sync"
	@echo "make image-binary   the static binary the Dockerfile builds"
	@echo "make control-plane  etcd, kube-apiserver, kube-controller-manager, kubectl, crictl into test/bin"

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/calico-cni-sync ./cmd/calico-cni-sync

# The same flags as the Dockerfile's build stage.
image-binary:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/calico-cni-sync-static ./cmd/calico-cni-sync

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
$(CP_BIN)/kubectl: $(CP_DEPS)
	@echo ">> building kubectl"
	cd test/tools && $(GO) build -o ../bin/kubectl k8s.io/kubernetes/cmd/kubectl
$(CP_BIN)/crictl: $(CRI_DEPS)
	@echo ">> building crictl"
	cd test/tools/cri && $(GO) build -o ../../bin/crictl sigs.k8s.io/cri-tools/cmd/crictl

test: control-plane
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

unit:
	$(GO) test -race -count=1 ./cniconf/... ./cmd/... ./sync/...

lint:
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

# Fuzzing runs for a number of inputs, not a duration: Go 1.26's fuzz
# coordinator can fail a run with "context deadline exceeded" when a duration
# ends (golang/go#75804). 200000 inputs take 10 to 20 s a target on 2 cores.
FUZZEXECS ?= 200000
# A manifest seed is 20 KB: each input costs more, so fewer are run.
FUZZMANIFESTEXECS ?= 20000
fuzz:
	$(GO) test ./cniconf -run '^$$' -fuzz '^FuzzRenderTemplate$$' -fuzztime $(FUZZEXECS)x
	$(GO) test ./cniconf -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZEXECS)x
	$(GO) test ./cniconf -run '^$$' -fuzz '^FuzzTraceEdits$$' -fuzztime $(FUZZEXECS)x
	$(GO) test ./sync/installcni -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZMANIFESTEXECS)x -fuzzminimizetime 2s

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
bench: control-plane
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./test/e2e/ ./test/runtime/ | tee bench.out

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
