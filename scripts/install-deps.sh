#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of bitstack from Debian packages.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -euo pipefail

PKGS=(
  build-essential meson ninja-build pkg-config
  libuv1-dev libjansson-dev libopenblas-dev liburing-dev libmicrohttpd-dev
  libedit-dev
  gnuplot-nox socat systemd bc curl
  nodejs chromium
  clang libclang-rt-dev
)
# The HTTP tests (tests/http) run the official openai npm package and playwright-core,
# pinned in tests/http/package-lock.json and installed by `npm ci` (.ci/run). npm comes from
# Debian's npm package unless the installed nodejs already brings its own (NodeSource's
# builds do, and conflict with Debian's npm).

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ! command -v npm >/dev/null 2>&1 && ! dpkg-query -W -f='${Status}' npm 2>/dev/null | grep -q "install ok installed"; then
  missing+=(npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
