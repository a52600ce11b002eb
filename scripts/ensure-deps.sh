#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain, when it is missing:
#   - Debian's chromium (renders the replay report in tests/report.rs)
# Idempotent: a warm machine skips every step.
set -euo pipefail

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (Debian package)"
  apt_install chromium
fi
