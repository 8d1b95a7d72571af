#!/usr/bin/env bash
# Installs everything Kiln needs to build and test, from Debian packages only.
# Idempotent: packages already present are skipped, and apt is not touched at all
# when nothing is missing. Uses sudo when not run as root.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang clang-format
  # tensors and TorchScript (CPU LibTorch; a CUDA LibTorch can be given with Torch_DIR)
  libtorch-dev libopenblas0-pthread
  # HTTP, status, JSON, logs, CLI, config
  libboost1.74-dev libabsl-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev
  # queue, store, webhooks
  libsqlite3-dev libcurl4-openssl-dev libssl-dev
  # distributed mode: the RabbitMQ client library, and a broker for its tests
  librabbitmq-dev rabbitmq-server
  # images
  libpng-dev libstb-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev curl bc
  # observability and UI tests: promtool + a real Prometheus, a headless browser
  prometheus chromium
  # deploy/ checks: Helm's template engine (Go text/template + Sprig) for the chart test
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  # tools/: model generation, training and export (Debian's python3, not a pyenv one)
  python3 python3-torch python3-numpy python3-yaml python3-pil python3-fastapi python3-uvicorn
)

# Node.js runs the browser test (playwright-core from npm, see tests/browser/package.json); a
# machine that already has node and npm (from any source) keeps them.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The deploy test runs `terraform fmt`, which these machines carry (it is not a Debian package).
if ! command -v terraform >/dev/null; then
  echo "install-deps: warning: terraform is not on PATH; the deploy test will fail" >&2
fi

# The S3 tests run moto_server, which these machines carry (it is not a Debian package).
if ! command -v moto_server >/dev/null; then
  echo "install-deps: warning: moto_server is not on PATH; the S3 store tests will fail" >&2
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
