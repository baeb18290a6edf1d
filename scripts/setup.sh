#!/usr/bin/env bash
# Set up splatforge on a fresh Debian machine: the system packages it needs, then the Python package itself,
# then a check that every native library loads (sf-doctor). Idempotent: installs only what is missing.
#
#   bash scripts/setup.sh          what the commands need (sf-demo, sf-train, sf-view, sf-render, sf-eval)
#   bash scripts/setup.sh --test   that plus what the test suite needs
#
# System packages and why (Debian names; README "System packages" lists the same):
#   libusb-1.0-0  open3d's Python module links libusb-1.0.so.0 (RealSense support) and fails to import without it;
#                 open3d ray-casts the procedural demo scenes and the viewer's mesh shadows
#   g++, libgomp1 compile and run the OpenMP CPU rasterizer (built on first use)
#   chromium      (--test only) headless browser for the viewer tests (viser's web client)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_PACKAGES=(libusb-1.0-0 g++ libgomp1)
TEST_PACKAGES=(chromium)

extras=""
case "${1:-}" in
  --test) extras="[dev]" ;;
  "") ;;
  *) echo "usage: bash scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

# apt_install RECOMMENDS PKG...: install the packages not yet installed (RECOMMENDS: yes/no).
apt_install() {
  local recommends=$1; shift
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "[setup] installing Debian packages: ${missing[*]}"
  local sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  local flags=(-y -qq); [ "$recommends" = yes ] || flags+=(--no-install-recommends)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install "${flags[@]}" "${missing[@]}" >/dev/null
}

apt_install no "${RUNTIME_PACKAGES[@]}"
# chromium keeps its recommended packages (fonts and the like the browser tests have always run with).
[ "$extras" = "[dev]" ] && apt_install yes "${TEST_PACKAGES[@]}"

echo "[setup] installing splatforge${extras} (pip)"
python3 -m pip install -q -e ".${extras}"
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi

echo "[setup] checking that the runtime libraries load (sf-doctor)"
python3 -m scripts.check_runtime --no-rasterizer
