#!/usr/bin/env bash
# Installs everything Kiln needs to build and test: Debian packages, and the project's Python
# virtual environment (.venv/, pinned by requirements.txt) whose torch wheel also provides the
# LibTorch that the C++ build links.
# Idempotent: apt is not touched when no package is missing, and pip runs only when the venv
# does not already hold exactly the pinned set. Uses sudo when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # toolchain (clang for `make thread-safety`, clang-format for `make format-check`)
  build-essential cmake ninja-build pkg-config clang clang-format
  # libFuzzer and the sanitizer runtimes for clang (`make fuzz`)
  libclang-rt-14-dev
  # HTTP, status, JSON, logs, CLI, config
  libboost1.74-dev libabsl-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev
  # queue, store, webhooks
  libsqlite3-dev libcurl4-openssl-dev libssl-dev
  # TLS tests make their certificates with the openssl command
  openssl
  # distributed mode: the RabbitMQ client library, and a broker for its tests
  librabbitmq-dev rabbitmq-server
  # images
  libpng-dev libstb-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev curl bc
  # observability and UI tests: promtool + a real Prometheus, a headless browser
  prometheus chromium
  # deploy/ checks: Helm's template engine (Go text/template + Sprig) for the chart test, and
  # HCL's formatter (what `terraform fmt` runs) for the Terraform files
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  golang-github-hashicorp-hcl-v2-dev
  # the project venv is made from Debian's python3 (not a pyenv one)
  python3 python3-venv
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

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} Debian packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The project venv. requirements.txt pins every package (torch's CUDA libraries included: the
# PyPI wheel links them, and they are what the GPU machines load); a copy of it inside the venv
# records what was installed, so a second run with the same pins does nothing.
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv "$VENV"
fi
if ! cmp -s requirements.txt "$VENV/installed-requirements.txt"; then
  echo "install-deps: installing Python packages into $VENV (requirements.txt)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r requirements.txt
  cp requirements.txt "$VENV/installed-requirements.txt"
else
  echo "install-deps: $VENV matches requirements.txt"
fi

# `terraform fmt` is not on any registry these machines reach; the deploy test uses it when it is
# on PATH and otherwise checks the same formatting with HCL's own formatter (tools/hcl-fmt).
if ! command -v terraform >/dev/null; then
  echo "install-deps: note: terraform is not on PATH; the deploy test checks the .tf files with tools/hcl-fmt"
fi
