#!/usr/bin/env bash
# Set up everything gatewatch needs on a fresh Debian 12 machine (or Raspberry Pi OS):
# the real services the tests start (mosquitto, influxd, victoria-metrics), and a Python
# virtual environment with torch, ultralytics and the project.
#
# The venv is cached outside the checkout, keyed by a hash of the dependency spec, so a fresh
# clone reuses it; it is built when missing. `.venv` in the checkout links to it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

apt_packages=(mosquitto mosquitto-clients influxdb victoria-metrics shellcheck openssl)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi
# The packages start system services; gatewatch's tests run their own instances on free ports.

case "$(uname -m)" in
  x86_64) torch_pins=("torch==2.14.1" "torchvision==0.29.1") ;;
  aarch64) torch_pins=("torch==2.9.1" "torchvision==0.24.1") ;;
  *) echo "unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
key="$( (cat pyproject.toml; printf '%s\n' "${torch_pins[@]}"; "$python" --version) | sha256sum | cut -c1-16)"
cache="${GATEWATCH_VENV_CACHE:-$HOME/.cache/gatewatch/venvs}"
venv="$cache/$key"

if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  log "building venv $venv (torch from the local wheel cache takes a few minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip "setuptools>=68" wheel
  "$venv/bin/pip" install -q "${torch_pins[@]}"
  # install the dependencies (not the project: the checkout changes, the venv is shared)
  "$venv/bin/pip" install -q ".[dev,export]"
  "$venv/bin/pip" uninstall -q -y gatewatch
  touch "$venv/.complete"
else
  log "reusing venv $venv"
fi
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
ln -sfn "$venv" .venv
log "ready: $(.venv/bin/python -c 'import torch, ultralytics; print("torch", torch.__version__, "ultralytics", ultralytics.__version__)')"
