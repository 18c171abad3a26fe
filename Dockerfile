# Image of the application binaries (worker, API, CLI, tenant service) for docker-compose.yml.
# The supported local path is scripts/demo.sh; this file exists for people who use Docker.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bins \
    && mkdir /out \
    && cp target/release/tenant-worker target/release/tenant-api target/release/tenants \
          target/release/tenant-service /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# The worker starts tenant workloads itself, from this binary.
ENV TP_TENANT_SERVICE_BIN=/usr/local/bin/tenant-service
