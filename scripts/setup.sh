#!/usr/bin/env bash
# Set up everything gatewatch needs on a fresh Debian 12 machine (or Raspberry Pi OS):
# the real services the tests start (mosquitto, influxd, victoria-metrics), and a Python
# virtual environment with torch, ultralytics and the project.
#
# The heavy packages live in a venv cached outside the checkout, keyed by a hash of the dependency
# spec, so a fresh clone reuses it; it is built when missing. The project itself is never installed
# there: `.venv` in each checkout is a thin venv of its own that sees the cached packages through a
# .pth file and this checkout's code before anything else, so two clones (or a CI clone beside a
# working tree) each run their own code.
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
# keyed by what is installed (the dependency lists, the torch pins, the interpreter), not by the whole
# pyproject.toml: a change to lint or package settings must not rebuild gigabytes of packages
deps="$("$python" -c 'import json, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(json.dumps([p["dependencies"], p.get("optional-dependencies", {})], sort_keys=True))')"
key="$( (printf '%s\n' "$deps" "${torch_pins[@]}"; "$python" --version) | sha256sum | cut -c1-16)"
cache="${GATEWATCH_VENV_CACHE:-$HOME/.cache/gatewatch/venvs}"
venv="$cache/$key"

if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  log "building venv $venv (torch from the local wheel cache takes a few minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip "setuptools>=68" wheel
  "$venv/bin/pip" install -q "${torch_pins[@]}"
  # the dependencies only: the project stays out of the shared venv (see the top of this file)
  "$venv/bin/pip" install -q ".[dev,export]"
  "$venv/bin/pip" uninstall -q -y gatewatch
  touch "$venv/.complete"
else
  log "reusing venv $venv"
fi
# A venv cached by an older setup may still hold an editable install of some checkout: remove it.
if "$venv/bin/python" -m pip show -q gatewatch >/dev/null 2>&1; then
  "$venv/bin/pip" uninstall -q -y gatewatch
fi

# This checkout's own thin venv.
[ -L .venv ] && rm .venv  # older setups linked .venv to the shared venv
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv --without-pip .venv
fi
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
shared_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
cat > "$site/gatewatch-checkout.pth" <<PTH
$here
import site; site.addsitedir("$shared_site")
PTH
# entry points that run this checkout's code with this checkout's interpreter
write_launcher() {  # write_launcher NAME PYTHON-CODE
  # the guard matters: multiprocessing's spawn re-imports the main script in every child
  printf '#!%s\nif __name__ == "__main__":\n    %s\n' "$here/.venv/bin/python" "$2" > ".venv/bin/$1"
  chmod +x ".venv/bin/$1"
}
write_launcher gatewatch "from gatewatch.cli import main; main()"
for tool in pytest mypy; do
  write_launcher "$tool" "import runpy, sys; sys.argv[0] = '$tool'; runpy.run_module('$tool', run_name='__main__', alter_sys=True)"
done
ln -sfn "$venv/bin/ruff" .venv/bin/ruff  # a native binary: nothing of the checkout's to run
log "ready: $(.venv/bin/python -c 'import torch, ultralytics, gatewatch; print("torch", torch.__version__, "ultralytics", ultralytics.__version__, "code", gatewatch.__path__[0])')"
