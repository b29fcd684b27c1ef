"""deploy/pi/install.sh: shellcheck-clean, and its dry run plans without changing anything.

The real install needs a Pi with internet (torch wheels, official weights); here the dry run is
run for real, with every system-changing command on PATH replaced by a shim that only records
that it was called, so "changes nothing" is checked rather than assumed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.procs import require_binary

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "pi" / "install.sh"
MUTATING = ["apt-get", "apt", "useradd", "usermod", "groupadd", "systemctl", "curl", "wget", "pip", "pip3",
            "chgrp", "chown", "ln", "install", "cp", "mv", "rsync"]


def test_shellcheck_clean() -> None:
    exe = require_binary("shellcheck")
    proc = subprocess.run([exe, "--severity=style", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def shims(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """PATH with recording shims for every command that could change the system.

    `rsync` is the exception the dry run may use, but only with --dry-run: its shim runs the real
    rsync when --dry-run is among the arguments and records the call otherwise. A shim is only put
    on PATH for a command the system has, so the script sees the same tools it would without them.
    """
    bin_dir, log = tmp_path / "shims", tmp_path / "calls.log"
    bin_dir.mkdir()
    real_rsync = shutil.which("rsync")
    for name in MUTATING:
        if name == "rsync" and not real_rsync:
            continue  # absent here: the script must plan the copy without it, as on a fresh Pi
        if name != "rsync" and not shutil.which(name):
            continue
        body = f'echo "{name} $*" >> "{log}"\nexit 0\n'
        if name == "rsync" and real_rsync:
            body = (f'case " $* " in *" --dry-run "*) exec {real_rsync} "$@" ;; esac\n' + body)
        shim = bin_dir / name
        shim.write_text("#!/bin/sh\n" + body)
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return env, log


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(stat.S_IMODE(p.stat().st_mode))
        else:
            out[rel] = "dir"
    return out


def test_dry_run_twice_same_plan_no_changes_under_root(tmp_path: Path, shims: tuple[dict[str, str], Path]) -> None:
    env, log = shims
    target = tmp_path / "pi"
    target.mkdir()
    first = run(env, "--dry-run", "--root", str(target))
    assert first.returncode == 0, first.stderr
    second = run(env, "--dry-run", "--root", str(target))
    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    assert tree(target) == {}
    assert not log.exists(), log.read_text()
    plan = first.stdout
    manifest = yaml.safe_load((ROOT / "models" / "manifest.yaml").read_text())
    model = manifest["models"][manifest["default"]]
    # the plan covers every step of a fresh install, with the weights the manifest names
    for expected in ("would   create system user gatewatch", "would   build venv", "torch==2.9.1 torchvision==0.24.1",
                     f"would   download {model['source']}", model["sha256_official"],
                     f"would   export {model['file']} to NCNN at {model['export']['pi']['imgsz']}",
                     "would   install " + str(target / "etc/systemd/system/gatewatch-edge.service"),
                     "would   enable gatewatch-edge.service", "change(s) planned"):
        assert expected in plan, (expected, plan)


def test_dry_run_on_this_system_changes_nothing(tmp_path: Path, shims: tuple[dict[str, str], Path]) -> None:
    """No --root: the plan is read off the real system, still with nothing run that changes it."""
    env, log = shims
    watched = [Path("/opt/gatewatch"), Path("/etc/gatewatch"), Path("/var/lib/gatewatch"),
               Path("/etc/systemd/system/gatewatch-edge.service")]
    before = {p: p.exists() for p in watched}
    first, second = run(env, "--dry-run"), run(env, "--dry-run")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert {p: p.exists() for p in watched} == before
    assert not log.exists(), log.read_text()


def test_plan_shrinks_as_the_system_gets_there(tmp_path: Path, shims: tuple[dict[str, str], Path]) -> None:
    """Checks are real: what is already in place is reported ok and leaves the plan."""
    env, _ = shims
    target = tmp_path / "pi"
    (target / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    fresh = run(env, "--dry-run", "--root", str(target)).stdout
    (target / "etc/passwd").write_text("gatewatch:x:999:999::/var/lib/gatewatch:/usr/sbin/nologin\n")
    (target / "etc/group").write_text("gatewatch:x:999:\nvideo:x:44:gatewatch\ngpio:x:997:pi,gatewatch\n")
    for d in ("opt/gatewatch", "etc/gatewatch/tls", "var/lib/gatewatch/models"):
        (target / d).mkdir(parents=True)
    unit = target / "etc/systemd/system/gatewatch-edge.service"
    shutil.copyfile(ROOT / "deploy/systemd/gatewatch-edge.service", unit)
    unit.chmod(0o644)
    (target / "etc/systemd/system/multi-user.target.wants/gatewatch-edge.service").symlink_to(
        "/etc/systemd/system/gatewatch-edge.service")
    later = run(env, "--dry-run", "--root", str(target)).stdout
    for line in ("ok      user gatewatch", "ok      gatewatch in group video", "ok      gatewatch in group gpio",
                 f"ok      folder {target}/etc/gatewatch/tls", f"ok      {unit}",
                 "ok      gatewatch-edge.service enabled"):
        assert line in later and line not in fresh, (line, later)
    count = [int(text.splitlines()[-1].split()[0]) for text in (fresh, later)]
    assert count[1] == count[0] - 10, (fresh, later)


def test_weights_with_wrong_sha256_are_refused(tmp_path: Path, shims: tuple[dict[str, str], Path]) -> None:
    env, log = shims
    fake = tmp_path / "yolov8n.pt"
    fake.write_bytes(b"not the official weights")
    proc = run(env, "--dry-run", "--root", str(tmp_path / "pi"), "--weights", str(fake))
    assert proc.returncode == 1
    assert "does not match models/manifest.yaml" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not log.exists()


def test_bundle_from_provisioning_is_planned(tmp_path: Path, shims: tuple[dict[str, str], Path]) -> None:
    require_binary("openssl")
    require_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    from gatewatch.provision import State, UnitOptions, provision_unit

    state = State(tmp_path / "state")
    provision_unit(state.root, "huu-nghi", "cam1", UnitOptions(broker_host="mqtt.gate.test"))
    env, log = shims
    proc = run(env, "--dry-run", "--root", str(tmp_path / "pi"), "--bundle", str(state.unit_dir("huu-nghi", "cam1")))
    assert proc.returncode == 0, proc.stderr
    etc = tmp_path / "pi/etc/gatewatch"
    for line in (f"would   install {etc}/unit.yaml", f"would   install {etc}/edge.env (mode 0600)",
                 f"would   install {etc}/tls/client.key (mode 0640)"):
        assert line in proc.stdout, proc.stdout
    assert not log.exists()
    bad = run(env, "--dry-run", "--root", str(tmp_path / "pi"), "--bundle", str(tmp_path))
    assert bad.returncode == 1 and "has no unit.yaml" in bad.stderr
