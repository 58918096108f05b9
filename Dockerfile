# syntax=docker/dockerfile:1
# calico-cni-sync: the static binary as the only layer on an empty base. This
# is the image `make image` writes as an archive without an engine (same
# build flags, user, entrypoint and labels; test/realnode checks that the two
# agree). With an engine:
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(cat VERSION) --build-arg REVISION=$(git rev-parse HEAD) \
#     -t calico-cni-sync:$(cat VERSION) .
#
# .git is not in the build context, so the revision comes as an argument.

# The Go release of go.mod's `go` line. It runs on the build host and
# cross-compiles (pure Go, no cgo) for the target platform.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Dependencies in their own layer: rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION
ARG REVISION=
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/calico-cni-sync ./cmd/calico-cni-sync

# No base: the binary needs no libc, shell, CA bundle or passwd file (the
# API server's CA comes with the service-account token). The image runs as
# an unprivileged user by default; the DaemonSet sets uid 0 itself, with every
# capability dropped, because only the owner of /etc/cni/net.d's files (root)
# may replace them.
FROM scratch
ARG VERSION
ARG REVISION=
COPY --from=build /out/calico-cni-sync /calico-cni-sync
USER 65532:65532
LABEL org.opencontainers.image.title=calico-cni-sync \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.licenses=Apache-2.0
EXPOSE 9645
ENTRYPOINT ["/calico-cni-sync"]
