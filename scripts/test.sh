#!/usr/bin/env bash
# Runs lifeboat's tests on a fresh machine: installs the real servers the tests start
# (PostgreSQL, moto S3, Azurite, fake-gcs-server, age/zstd for comparisons), then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/setup.sh)"
cargo test --locked --no-fail-fast "$@"
