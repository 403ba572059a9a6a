# syntax=docker/dockerfile:1.7
# order-gateway container: cargo-chef caches the dependency build, the runtime
# is distroless (glibc + CA certificates, no shell) and runs as a numeric
# non-root user. Migrations and openapi.yaml are compiled into the binary.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only: this layer is reused until Cargo.toml/Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin order-gateway \
 && install -m 0755 target/release/order-gateway /usr/local/bin/order-gateway

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder --chown=0:0 --chmod=0755 /usr/local/bin/order-gateway /usr/local/bin/order-gateway
USER 65532:65532
ENV LISTEN_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/order-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/order-gateway"]
CMD ["serve"]
