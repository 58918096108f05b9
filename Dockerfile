# syntax=docker/dockerfile:1
# calico-cni-sync: a static binary on a minimal root image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t calico-cni-sync .
#
# The build stage runs the same command as `make image-binary`
# (CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)').
# .git is not in the build context, so the revision comes as an argument.

# The Go release of go.mod's `go` line. It runs on the build host and
# cross-compiles (pure Go, no cgo) for the target platform.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Dependencies in their own layer: rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/calico-cni-sync ./cmd/calico-cni-sync

# distroless/static: no shell, no package manager, CA certificates and
# /etc/passwd only. Not the :nonroot variant: the agent runs as uid 0 because
# /etc/cni/net.d and the files in it belong to root and only their owner may
# replace them (the DaemonSet drops every capability, so uid 0 gains nothing
# beyond that ownership). Pin a digest when you publish.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/calico-cni-sync /calico-cni-sync
USER 0:0
EXPOSE 9645
ENTRYPOINT ["/calico-cni-sync"]
