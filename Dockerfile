# syntax=docker/dockerfile:1.7
#
# sessiongate container image.
#
#   docker build -t sessiongate:dev .
#   docker run --rm -p 8080:8080 -v "$PWD/my-config:/etc/sessiongate/config:ro" sessiongate:dev
#
# Layout, the same as the Helm chart's: /etc/sessiongate/config/ (config/ of
# this repository), /etc/sessiongate/data/ (writable, the shipped config's
# SQLite file: ../data/sessiongate.db).
#
# DEMO DEFAULT -- NOT FOR PRODUCTION. The default command runs the shipped
# config/sessiongate.yaml, which signs with config/keys/example-k1.pem: a
# PUBLIC key (it is in this repository), so anyone can mint tokens this
# container accepts. sessiongate says so at every start. It is shipped only so
# that `docker run IMAGE` starts as documented; every real deployment mounts
# its own config and keys over /etc/sessiongate/config (the Helm chart does).
# Why not a key generated at build time instead: it would be just as readable
# by anyone who pulls the image, but would look like a real secret and escape
# the binary's example-key warning.
#
# Stages: `chef` (toolchain + cargo-chef) -> `planner` (dependency recipe)
# -> `builder` (dependencies cooked in their own cached layer, then the crate)
# -> runtime (distroless, uid 65532, nothing but the binary and config/).
#
# The builder and runtime must share a glibc: Debian bookworm <-> debian12.

# The exact release: link/symbol-order.txt names functions by their mangled
# names, whose hashes change with the compiler (BENCHMARKS.md, session 11).
ARG RUST_VERSION=1.95.0
ARG DEBIAN_CODENAME=bookworm
ARG CARGO_CHEF_VERSION=0.1.77

FROM rust:${RUST_VERSION}-${DEBIAN_CODENAME} AS chef
# cmake builds the C dependencies (aws-lc-sys, libz-ng-sys); gcc, make and
# perl already come with the image. Debian package versions are not pinned on
# purpose: the base tag pins the Debian release, whose security updates we want.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies first: this layer is reused until Cargo.toml/Cargo.lock change.
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo chef cook --release --locked --bin sessiongate --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked --bin sessiongate \
 && install -D -m 0555 target/release/sessiongate /out/sessiongate \
 && install -d -m 0750 /out/data

# distroless/cc: glibc, libgcc, CA certificates, tzdata; no shell, no package
# manager. The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="sessiongate" \
      org.opencontainers.image.description="Reverse-proxy authentication sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/sessiongate /usr/local/bin/sessiongate
# The shipped example config (root-owned, read-only) and its PUBLIC example
# key, the only key .dockerignore lets through (every other *.pem / *.key is
# dropped). Mount your config and keys over this folder.
COPY config/ /etc/sessiongate/config/
# The only writable path: the shipped config's SQLite store (../data).
# In Kubernetes the chart mounts a volume at /var/lib/sessiongate instead
# (read-only root fs).
COPY --from=builder --chown=65532:65532 /out/data /etc/sessiongate/data
USER 65532:65532
WORKDIR /etc/sessiongate
# The shipped config listens on ${SG_LISTEN:-127.0.0.1:8080} and
# ${SG_ADMIN_LISTEN:-127.0.0.1:9090}; in a container only all interfaces are
# reachable from outside (.ci/k8s-check verifies every EXPOSEd port is one the
# default config listens on, off loopback).
ENV SG_LISTEN=0.0.0.0:8080 \
    SG_ADMIN_LISTEN=0.0.0.0:9090
# 8080: client listener; 9090: admin (/healthz, /readyz, /metrics).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["run", "--config", "/etc/sessiongate/config/sessiongate.yaml"]
