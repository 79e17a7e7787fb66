# The demo binary in a small image, for docker-compose.yml and for running it as a sidecar.
#   docker build -t leader-election-demo .
#   docker run --rm leader-election-demo --help
# Stage 1 builds with the Rust toolchain; stage 2 is Debian slim with only the binary, run as
# an unprivileged user.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# protoc: etcd-client generates its gRPC code at build time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p demo \
 && cp target/release/demo /usr/local/bin/demo

FROM debian:${DEBIAN_RELEASE}-slim
# CA certificates for rediss:// and https:// etcd endpoints.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin demo
COPY --from=builder /usr/local/bin/demo /usr/local/bin/demo
USER 10001:10001
# The port the compose file serves --http on inside each container.
EXPOSE 8080
# docker stop sends SIGTERM: the leader ends its term, stops its command and releases the lock.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/demo"]
CMD ["--help"]
