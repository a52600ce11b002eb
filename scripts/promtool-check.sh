#!/usr/bin/env bash
# Checks the deployment files under deploy/:
#   - Prometheus: promtool check config, check rules, and the rule unit tests (rules_test.yml);
#   - systemd: `systemd-analyze verify` of the unit, when systemd-analyze is present.
# Installs Debian's prometheus package (which ships promtool) when promtool is missing.
# Works from any directory; exits non-zero on the first failure. tests/deploy_files.rs runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "== installing promtool (Debian package prometheus)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | sed -n 1p

echo "== promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

echo "== promtool check rules deploy/prometheus/rules.yml"
promtool check rules deploy/prometheus/rules.yml

echo "== promtool test rules deploy/prometheus/rules_test.yml"
promtool test rules deploy/prometheus/rules_test.yml

if command -v systemd-analyze >/dev/null 2>&1; then
  echo "== systemd-analyze verify deploy/systemd/swipeguard.service"
  # verify insists that ExecStart's binary exists: check a copy pointing at a stub instead.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  printf '#!/bin/sh\nexit 0\n' >"$tmp/swipeguard"
  chmod +x "$tmp/swipeguard"
  sed "s#/usr/local/bin/swipeguard#$tmp/swipeguard#g" deploy/systemd/swipeguard.service \
    >"$tmp/swipeguard.service"
  # Unknown keys and bad values are only warnings to systemd: any output is a failure here.
  out=$(systemd-analyze verify --man=no "$tmp/swipeguard.service" 2>&1) || { echo "$out"; exit 1; }
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
  echo "ok"
else
  echo "== systemd-analyze not found: skipping the unit check (tests/deploy_files.rs checks its keys)"
fi
