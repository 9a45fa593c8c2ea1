#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine, then runs
# formatting, lints and every test of the workspace. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Real servers the integration tests start on loopback (never as system services).
packages=()
command -v mosquitto >/dev/null 2>&1 || packages+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || packages+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
command -v influxd >/dev/null 2>&1 || packages+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || packages+=(victoria-metrics)
if [ ${#packages[@]} -gt 0 ]; then
  echo "installing: ${packages[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
# Debian's mosquitto, influxdb and victoria-metrics packages may start services on their
# default ports; the tests never use them (they start their own on free loopback ports).

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
