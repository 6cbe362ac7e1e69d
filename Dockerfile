# syntax=docker/dockerfile:1
# The netward image: one binary that runs any target (`netward inventory`,
# `netward planner`, …) and the operator CLI, including `netward health`,
# which the compose stack's health checks run.
#
# Stages: `chef` (Rust + cargo-chef), `plan` (the dependency recipe),
# `build` (dependencies first — a cached layer while Cargo.lock is
# unchanged — then netward itself), `runtime` (debian slim, CA certificates,
# the binary, a non-root user). No protoc anywhere: shared/build.rs compiles
# the protos with protox, in pure Rust.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version ~0.1.71
WORKDIR /src

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
# The protos are read by netward-shared's build script; they change rarely.
COPY proto proto
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin netward
COPY . .
RUN cargo build --release --locked --bin netward \
    && install -D target/release/netward /out/netward

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin netward
COPY --from=build /out/netward /usr/local/bin/netward
# Numeric, so a runtime that enforces non-root can check it without /etc/passwd.
USER 10001:10001
# gRPC 50051-50055 and metrics 9551-9555, one pair per target.
EXPOSE 50051 50052 50053 50054 50055 9551 9552 9553 9554 9555
ENTRYPOINT ["netward"]
CMD ["--help"]
