#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, when it is missing:
#   - perl and make (the build of the vendored OpenSSL that librdkafka's TLS/SASL links)
#   - Debian's chromium (renders the replay report in tests/report.rs)
#   - Debian's prometheus (promtool for tests/deploy_files.rs and scripts/promtool-check.sh;
#     the prometheus server for tests/prometheus_scrape.rs)
#   - Debian's sqlite3 (tests/support adds an index the test broker's SQLite schema lacks)
#   - nisshi 0.7.0-pre.2, a Kafka-protocol broker (../shared/BROKER.md says why this version and
#     these features); built once (10-15 min on 2 cores) and cached in ~/.cargo/bin
# Idempotent: a warm machine skips every step.
set -euo pipefail

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# OpenSSL, built from source for librdkafka's TLS and SASL, configures itself with perl.
if ! perl -MIPC::Cmd -e1 >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  echo "== installing perl and make (Debian packages; the OpenSSL build needs them)"
  apt_install perl make
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (Debian package)"
  apt_install chromium
fi

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus and promtool (Debian package prometheus)"
  apt_install --no-install-recommends prometheus
fi

if ! command -v sqlite3 >/dev/null 2>&1; then
  echo "== installing sqlite3 (Debian package)"
  apt_install sqlite3
fi

NISSHI_VERSION=0.7.0-pre.2
if ! nisshi --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
  echo "== installing nisshi $NISSHI_VERSION (cargo install; cached in ~/.cargo/bin afterwards)"
  cargo install "nisshi@$NISSHI_VERSION" --locked --features dynostore,libsql
fi
