# syntax=docker/dockerfile:1
# lifeboat: build in the Rust image, run in Debian slim with the client tools lifeboat calls:
# pg_dump/pg_restore (postgresql-client), redis-cli (redis-tools), etcdctl/etcdutl
# (etcd-client). Runs as uid 65532 with a read-only root filesystem (see deploy/).
#
#   docker build -t lifeboat .                            # the daemon / CronJob image
#   docker build --target sandbox -t lifeboat-sandbox .   # `sandbox.kubernetes.image`: adds
#                                                         # the servers verification starts

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config cmake make g++ \
    && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY migrations migrations
COPY src src
RUN cargo build --release --locked && strip target/release/lifeboat

FROM debian:bookworm-slim AS runtime
# PostgreSQL's own repository is not needed: bookworm's client (15) dumps servers up to 15;
# for newer servers, build FROM an image with a newer postgresql-client.
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates postgresql-client redis-tools etcd-client tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 lifeboat \
    && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin lifeboat
COPY --from=build /src/target/release/lifeboat /usr/local/bin/lifeboat
USER 65532:65532
ENV HOME=/tmp
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/lifeboat"]
CMD ["run", "--config", "/etc/lifeboat/config/lifeboat.yaml"]

# The image of `lifeboat verify --sandbox kubernetes` Jobs: the same, plus the servers a
# local sandbox starts (initdb/pg_ctl/postgres, redis-server, etcd).
FROM runtime AS sandbox
USER root
RUN apt-get update && apt-get install -y --no-install-recommends \
        postgresql redis-server etcd-server \
    && rm -rf /var/lib/apt/lists/*
USER 65532:65532

# The default target: the daemon / CronJob image.
FROM runtime
