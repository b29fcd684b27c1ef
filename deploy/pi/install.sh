#!/usr/bin/env bash
# Install (or update) a gatewatch edge unit on Raspberry Pi OS (Debian 12, aarch64).
#
#   sudo deploy/pi/install.sh [--dry-run] [--bundle DIR] [--weights FILE] [--root DIR]
#
#   --dry-run       print the plan (what would change) and change nothing
#   --bundle DIR    a unit bundle from `gatewatch provision-unit` (deploy-state/units/<gate>/<unit>):
#                   unit.yaml, edge.env and tls/ go to /etc/gatewatch (an existing unit.yaml is kept)
#   --weights FILE  a local copy of the official weights (no download); checked like a download
#   --root DIR      install under DIR instead of / (for building an SD-card image, and for tests)
#
# Every step checks first and only acts when something is missing or different, so running the
# script again is safe and reports "nothing to change". Weights are downloaded once, verified
# against models/manifest.yaml, and exported to NCNN (fastest on the Pi's CPU) once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

dry_run=0
bundle=""
weights_file=""
root=""
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --bundle) bundle="${2:?--bundle needs a folder}"; shift ;;
    --weights) weights_file="${2:?--weights needs a file}"; shift ;;
    --root) root="${2:?--root needs a folder}"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
root="${root%/}"

# Pins: torch/torchvision are CPU builds on aarch64 (DESIGN.md "Models offline"). ncnn and pnnx
# are what ultralytics' NCNN export imports; gatewatch runs ultralytics offline (YOLO_OFFLINE=1),
# so it would not install them itself, and nothing should be pip-installed behind our back. The
# pnnx pin follows ultralytics' own (ultralytics/utils/export/ncnn.py: "pnnx==20260526").
torch_pins=("torch==2.9.1" "torchvision==0.24.1")
extra_pins=("ncnn>=1.0.20240410" "pnnx==20260526")
apt_packages=(python3 python3-venv python3-dev rsync curl ca-certificates mosquitto-clients
  python3-picamera2)
user=gatewatch
groups=(video gpio)
app="$root/opt/gatewatch"
venv="$app/.venv"
etc="$root/etc/gatewatch"
state="$root/var/lib/gatewatch"
models="$state/models"
unit_file="gatewatch-edge.service"
unit_src="$repo/deploy/systemd/$unit_file"
unit_dst="$root/etc/systemd/system/$unit_file"
unit_wants="$root/etc/systemd/system/multi-user.target.wants/$unit_file"
imgsz=480

changes=0
say() { printf '%s\n' "$*"; }
ok() { say "ok      $*"; }
die() { echo "error: $*" >&2; exit 1; }
# change DESCRIPTION CMD...: count it, print it, and run it unless this is a dry run.
change() {
  local what="$1"; shift
  changes=$((changes + 1))
  if ((dry_run)); then say "would   $what"; else say "doing   $what"; "$@"; fi
}

# -- manifest: which weights, from where, which sha256 ---------------------------------------------
manifest="$repo/models/manifest.yaml"
[ -f "$manifest" ] || die "$manifest not found: run this from a gatewatch checkout"
model_name="$(awk '/^default:/ {print $2}' "$manifest")"
manifest_field() {  # manifest_field KEY: KEY of the default model (flat, 4-space indented keys)
  awk -v m="  $model_name:" -v k="    $1:" '
    $0 == m {inside = 1; next}
    inside && /^  [^ ]/ {inside = 0}
    inside && index($0, k) == 1 {sub(/^[^:]*:[ ]*/, ""); print; exit}' "$manifest"
}
weights_name="$(manifest_field file)"
weights_url="$(manifest_field source)"
weights_sha="$(manifest_field sha256_official)"
[[ "$weights_sha" =~ ^[0-9a-f]{64}$ ]] || die "no sha256_official for $model_name in $manifest"
if [ -z "$weights_name" ] || [ -z "$weights_url" ]; then die "no file/source for $model_name in $manifest"; fi
weights="$models/$weights_name"
# edge/devtools/export.py keys its output by the weights' sha256 and the export settings and writes
# <output>.manifest.json (with that sha256) last; unit.yaml names the link to it
ncnn_link="$models/${weights_name%.*}-vehicles-${imgsz}_ncnn_model"

# -- 1. platform -----------------------------------------------------------------------------------
arch="$(uname -m)"
if [ "$arch" != aarch64 ]; then
  ((dry_run)) || [ -n "$root" ] || die "this is $arch; the Pi installer needs aarch64 (Raspberry Pi OS 64-bit)"
  say "note    this is $arch, not aarch64: a plan only"
fi
if [ -z "$root" ] && ((!dry_run)) && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo): it installs packages, a user and a systemd unit"
fi

# -- 2. system packages ----------------------------------------------------------------------------
missing=()
for p in "${apt_packages[@]}"; do
  if [ -n "$root" ] || ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
if ((${#missing[@]})); then
  if [ -n "$root" ]; then
    # packages go into the image with its own apt, not ours
    say "skip    apt packages under --root: install ${missing[*]} in the image"
  else
    change "apt-get install ${missing[*]}" apt_install "${missing[@]}"
  fi
else
  ok "apt packages (${apt_packages[*]})"
fi

# -- 3. service user ---------------------------------------------------------------------------------
has_user() {
  if [ -n "$root" ]; then grep -q "^$user:" "$root/etc/passwd" 2>/dev/null; else getent passwd "$user" >/dev/null; fi
}
in_group() {
  if [ -n "$root" ]; then grep -Eq "^$1:[^:]*:[^:]*:(.*,)?$user(,|$)" "$root/etc/group" 2>/dev/null
  else id -nG "$user" 2>/dev/null | tr ' ' '\n' | grep -qx "$1"; fi
}
root_args=()
[ -z "$root" ] || root_args=(--root "$root")
if has_user; then ok "user $user"; else
  change "create system user $user" useradd "${root_args[@]}" --system --home-dir /var/lib/gatewatch \
    --shell /usr/sbin/nologin --user-group "$user"
fi
for g in "${groups[@]}"; do
  if in_group "$g"; then ok "$user in group $g"; else
    change "add $user to group $g" usermod "${root_args[@]}" -aG "$g" "$user"
  fi
done

# -- 4. folders ------------------------------------------------------------------------------------
for d in "$app" "$etc" "$etc/tls" "$state" "$models"; do
  if [ -d "$d" ]; then ok "folder $d"; else change "create folder $d" install -d -m 0755 "$d"; fi
done

# -- 5. code: a copy of this checkout in /opt/gatewatch (its .venv is left alone) -------------------
rsync_args=(-a --delete --exclude .git/ --exclude .venv/ --exclude deploy-state/ --exclude __pycache__/
  --exclude '*.egg-info/' --exclude .pytest_cache/ --exclude .mypy_cache/ --exclude .ruff_cache/ --exclude out/)
if [ "$repo" = "$(cd "$app" 2>/dev/null && pwd)" ]; then
  ok "code (running from $app)"
elif [ -d "$app" ] && command -v rsync >/dev/null &&
  [ -z "$(rsync "${rsync_args[@]}" --dry-run --itemize-changes "$repo/" "$app/" | grep -v '^\.d' || true)" ]; then
  ok "code in $app matches $repo"
else
  change "copy $repo to $app" rsync "${rsync_args[@]}" "$repo/" "$app/"
fi

# -- 6. Python environment ---------------------------------------------------------------------------
deps_key="$( (cat "$repo/pyproject.toml"; printf '%s\n' "${torch_pins[@]}" "${extra_pins[@]}") | sha256sum | cut -c1-16)"
stamp="$venv/.gatewatch-deps"
build_venv() {
  python3 -m venv --system-site-packages "$venv"  # system site: python3-picamera2 comes from apt
  "$venv/bin/pip" install -q --upgrade pip "setuptools>=68" wheel
  "$venv/bin/pip" install -q "${torch_pins[@]}"
  "$venv/bin/pip" install -q "${extra_pins[@]}" -e "$app"
  printf '%s\n' "$deps_key" >"$stamp"
}
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$deps_key" ]; then
  ok "venv $venv (dependencies $deps_key)"
else
  change "build venv $venv with ${torch_pins[*]} ${extra_pins[*]} and gatewatch" build_venv
fi

# -- 7. weights, once, verified ------------------------------------------------------------------
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
fetch_weights() {
  local tmp="$weights.part"
  if [ -n "$weights_file" ]; then cp "$weights_file" "$tmp"; else curl -fL --retry 3 -o "$tmp" "$weights_url"; fi
  local got
  got="$(sha_of "$tmp")"
  if [ "$got" != "$weights_sha" ]; then
    rm -f "$tmp"
    die "weights sha256 $got does not match models/manifest.yaml ($weights_sha); not installed"
  fi
  mv "$tmp" "$weights"
}
if [ -f "$weights" ] && [ "$(sha_of "$weights")" = "$weights_sha" ]; then
  ok "weights $weights (sha256 matches the manifest)"
else
  if [ -n "$weights_file" ]; then
    [ -f "$weights_file" ] || die "--weights $weights_file: no such file"
    [ "$(sha_of "$weights_file")" = "$weights_sha" ] ||
      die "--weights $weights_file: sha256 $(sha_of "$weights_file") does not match models/manifest.yaml ($weights_sha)"
    change "copy $weights_file to $weights (sha256 verified)" fetch_weights
  else
    change "download $weights_url to $weights (then verify sha256 $weights_sha)" fetch_weights
  fi
fi

# -- 8. NCNN export, once -------------------------------------------------------------------------
export_ncnn() {
  local out
  # edge.devtools.export prints the exported path last (ultralytics may log to stdout before it)
  out="$(YOLO_CONFIG_DIR="$state/ultralytics" \
    "$venv/bin/python" -m edge.devtools.export "$weights" ncnn "$imgsz" --out-dir "$models" | tail -n 1)"
  grep -q "$weights_sha" "$out.manifest.json" 2>/dev/null || die "export wrote no complete NCNN model ($out)"
  ln -sfn "$(basename "$out")" "$ncnn_link"
}
ncnn_dir="$models/$(readlink "$ncnn_link" 2>/dev/null || true)"
if [ -L "$ncnn_link" ] && [ -d "$ncnn_dir" ] && grep -q "$weights_sha" "$ncnn_dir.manifest.json" 2>/dev/null; then
  ok "NCNN export $ncnn_link -> $(basename "$ncnn_dir") (of these weights)"
else
  change "export $weights_name to NCNN at $imgsz and link $ncnn_link to it" export_ncnn
fi

# The service runs as $user; systemd's StateDirectory= would fix ownership at start, but a unit
# started by hand (gatewatch calibrate as $user) needs it now.
owner="$(stat -c %U "$state" 2>/dev/null || true)"
if [ "$owner" = "$user" ]; then ok "$state owned by $user"; else
  change "give $state to $user" chown -R "$user:$user" "$state"
fi

# -- 9. unit bundle from provisioning ----------------------------------------------------------------
# install_file SRC DST MODE: copy unless the same bytes are there (and fix the mode).
install_file() {
  local src="$1" dst="$2" mode="$3"
  if [ -f "$dst" ] && cmp -s "$src" "$dst" && [ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
    ok "$dst"
  else
    change "install $dst (mode $mode)" install -m "$mode" "$src" "$dst"
  fi
}
if [ -n "$bundle" ]; then
  for f in unit.yaml edge.env tls/ca.crt tls/client.crt tls/client.key; do
    [ -f "$bundle/$f" ] || die "--bundle $bundle has no $f (make it with gatewatch provision-unit)"
  done
  if [ -f "$etc/unit.yaml" ]; then
    ok "$etc/unit.yaml (kept: it holds this unit's calibrated lanes)"
  else
    change "install $etc/unit.yaml" install -m 0644 "$bundle/unit.yaml" "$etc/unit.yaml"
  fi
  install_file "$bundle/edge.env" "$etc/edge.env" 0600
  install_file "$bundle/tls/ca.crt" "$etc/tls/ca.crt" 0644
  install_file "$bundle/tls/client.crt" "$etc/tls/client.crt" 0644
  install_file "$bundle/tls/client.key" "$etc/tls/client.key" 0640
  key_group="$(stat -c %G "$etc/tls/client.key" 2>/dev/null || true)"
  if [ "$key_group" = "$user" ]; then ok "$etc/tls/client.key readable by group $user"; else
    change "let group $user read $etc/tls/client.key" chgrp "$user" "$etc/tls/client.key"
  fi
elif [ ! -f "$etc/unit.yaml" ]; then
  say "note    no --bundle and no $etc/unit.yaml: make one with gatewatch provision-unit (docs/installer-guide.md)"
fi

# -- 10. systemd ---------------------------------------------------------------------------------
[ -f "$unit_src" ] || die "$unit_src not found"
install_file "$unit_src" "$unit_dst" 0644
if [ -L "$unit_wants" ]; then ok "$unit_file enabled"; else
  if [ -n "$root" ]; then
    change "enable $unit_file" ln -sfn "/etc/systemd/system/$unit_file" "$unit_wants"
  else
    change "enable $unit_file" systemctl enable "$unit_file"
  fi
fi
if [ -z "$root" ] && ((!dry_run)) && ((changes)); then
  systemctl daemon-reload
  if [ -f "$etc/unit.yaml" ]; then
    say "doing   restart $unit_file"
    systemctl restart "$unit_file"
  fi
fi

if ((changes == 0)); then
  say "nothing to change"
elif ((dry_run)); then
  say "$changes change(s) planned; run without --dry-run to apply"
else
  say "$changes change(s) applied"
fi
