#!/usr/bin/env bash
# Install the Apache Flink (PyFlink) peer used by the swipeguard benchmarks.
#
# Creates a Python virtual environment at $FLINK_VENV (default
# $HOME/.cache/swipeguard/flink-venv, outside the repository so it survives
# between runs) and installs apache-flink from PyPI into it. PyFlink's wheel
# bundles the Flink distribution itself (lib/ holds flink-dist, flink-json,
# flink-csv, flink-cep and the filesystem connector), so nothing else is
# downloaded; a Java 11+ runtime must be on PATH (or JAVA_HOME).
#
# Idempotent: when the venv's python already imports pyflink at the wanted
# version, it does nothing.
#
# Environment:
#   FLINK_VENV      venv path            (default $HOME/.cache/swipeguard/flink-venv)
#   FLINK_VERSION   apache-flink version (default 2.3.0)
#   PYTHON          interpreter to build the venv with (default python3.11, else python3)
set -euo pipefail

FLINK_VENV="${FLINK_VENV:-$HOME/.cache/swipeguard/flink-venv}"
FLINK_VERSION="${FLINK_VERSION:-2.3.0}"
if [[ -z "${PYTHON:-}" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

installed_version() {
  # Prints the installed apache-flink version if pyflink imports, else nothing.
  "$FLINK_VENV/bin/python" - <<'PY' 2>/dev/null || true
import importlib.metadata, pyflink  # noqa: F401  (the import is the check)
print(importlib.metadata.version("apache-flink"))
PY
}

if [[ -x "$FLINK_VENV/bin/python" ]] && [[ "$(installed_version)" == "$FLINK_VERSION" ]]; then
  echo "flink peer: apache-flink==$FLINK_VERSION already installed in $FLINK_VENV"
  exit 0
fi

if ! command -v java >/dev/null 2>&1 && [[ -z "${JAVA_HOME:-}" ]]; then
  echo "flink peer: no java on PATH and JAVA_HOME unset; PyFlink needs Java 11+ (17 tested)" >&2
  exit 1
fi

echo "flink peer: creating venv $FLINK_VENV with $PYTHON"
mkdir -p "$(dirname "$FLINK_VENV")"
"$PYTHON" -m venv "$FLINK_VENV"
"$FLINK_VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
echo "flink peer: installing apache-flink==$FLINK_VERSION (large download: ~300 MB)"
"$FLINK_VENV/bin/python" -m pip install "apache-flink==$FLINK_VERSION"

v="$(installed_version)"
if [[ "$v" != "$FLINK_VERSION" ]]; then
  echo "flink peer: install finished but pyflink does not import at $FLINK_VERSION (got '$v')" >&2
  exit 1
fi
echo "flink peer: apache-flink==$v ready in $FLINK_VENV"
