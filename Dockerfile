# syntax=docker/dockerfile:1
#
# sshchat in a container: a static binary on distroless, running as nonroot.
#   docker build -t sshchat .
#   docker run -d --name sshchat -p 2222:2222 -v sshchat-keys:/keys -v sshchat-data:/data sshchat
#   docker exec -i sshchat sshchat keys add alice - < ~/.ssh/id_ed25519.pub
# Metrics (off by default) on 9222: add -e SSHCHAT_METRICS=:9222 -p 127.0.0.1:9222:9222.
# SIGHUP reloads the allowed keys (docker kill -s HUP sshchat) unless the
# container has a terminal (-t), where it shuts down.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# The whole context, .git included: go build stamps the commit into the
# binary for `sshchat version`.
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
	go build -trimpath -ldflags='-s -w' -o /out/sshchat . \
	&& mkdir -m 0700 /out/keys /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sshchat /usr/local/bin/sshchat
# 65532 is distroless's nonroot user: the volumes start out as its own.
COPY --from=build --chown=65532:65532 /out/keys /keys
COPY --from=build --chown=65532:65532 /out/data /data
ENV SSHCHAT_ADDR=:2222 \
	SSHCHAT_HOST_KEY=/keys/host_ed25519 \
	SSHCHAT_KEYS=/keys/allowed_keys \
	SSHCHAT_OPS=/keys/ops \
	SSHCHAT_DATA=/data
VOLUME ["/keys", "/data"]
# 2222: SSH. The metrics listener (-metrics, SSHCHAT_METRICS) is off by
# default; the conventional port is 9222.
EXPOSE 2222
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sshchat"]
CMD ["serve"]
