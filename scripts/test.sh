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
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
# The `train` feature builds LightGBM from source (C++ via CMake; bindgen needs libclang).
command -v g++ >/dev/null 2>&1 || packages+=(g++)
command -v make >/dev/null 2>&1 || packages+=(make)
dpkg -s libclang-dev >/dev/null 2>&1 || packages+=(libclang-dev)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
if [ ${#packages[@]} -gt 0 ]; then
  echo "installing: ${packages[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
# Debian's mosquitto, influxdb, victoria-metrics and prometheus packages may start services on their
# default ports; the tests never use them (they start their own on free loopback ports).

# LightGBM needs CMake >= 3.28, newer than Debian's: take PyPI's when it is missing or old.
cmake_ok() {
  command -v cmake >/dev/null 2>&1 || return 1
  local version
  version=$(cmake --version | head -n1 | awk '{print $3}')
  [ "$(printf '%s\n' 3.28 "$version" | sort -V | head -n1)" = 3.28 ]
}
if ! cmake_ok; then
  echo "installing cmake >= 3.28 from PyPI"
  python3 -m pip install --user --quiet cmake 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages cmake
  export PATH="$(python3 -m site --user-base)/bin:$PATH"
  cmake_ok || { echo "cmake >= 3.28 is still not on PATH" >&2; exit 1; }
fi

# tests/retrain.rs and tests/registry.rs read blobs from Azurite, the Azure Storage
# emulator (npm; testkit finds it in this directory). Needs Node.js >= 18.
AZURITE_VERSION=3.35.0
AZURITE_DIR="$HOME/.cache/smartgrid/azurite"
command -v npm >/dev/null 2>&1 || { sudo_if_needed apt-get update -qq; DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends nodejs npm; }
if [ "$(cd "$AZURITE_DIR" 2>/dev/null && node -p 'require("azurite/package.json").version' 2>/dev/null)" != "$AZURITE_VERSION" ]; then
  echo "installing azurite $AZURITE_VERSION into $AZURITE_DIR"
  mkdir -p "$AZURITE_DIR"
  npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION"
fi

# tests/config.rs checks `smartgrid schema` with a real JSON Schema validator.
if ! python3 -c 'import jsonschema, yaml' >/dev/null 2>&1; then
  echo "installing jsonschema and PyYAML from PyPI"
  python3 -m pip install --user --quiet jsonschema pyyaml 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages jsonschema pyyaml
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# with LightGBM training (and the tests that compare the evaluator with LightGBM)
cargo clippy --workspace --all-targets --locked --features smartgrid/train -- -D warnings
cargo test --workspace --locked --features smartgrid/train
# and once without it: `model train` must say how to get it (tests/model_cli.rs)
cargo test --locked -p smartgrid --test model_cli
