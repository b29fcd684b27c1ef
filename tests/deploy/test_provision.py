"""Provisioning commands through the real CLI: idempotent, private files private, secrets unprinted."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edge.config import load_config
from gatewatch.cli import app
from gatewatch.provision import UNIT_PASSWORD_ENV, State, UnitOptions, provision_unit
from tests.deploy.mqtt_probe import env_value
from tests.fixtures.procs import require_binary

runner = CliRunner()


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    require_binary("openssl")


def gw(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mode of every file, to prove a second run changes nothing."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def provision_all(root: Path) -> list[str]:
    outputs = []
    for args in (
        ["provision-broker", "--dir", str(root), "--host", "mqtt.gate.test"],
        ["provision-server", "--dir", str(root)],
        ["provision-unit", "--dir", str(root), "--gate", "huu-nghi", "--unit", "cam1",
         "--broker-host", "mqtt.gate.test", "--source", "rtsp://10.0.0.9/stream1"],
    ):
        code, out = gw(*args)
        assert code == 0, out
        outputs.append(out)
    return outputs


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "state"
    first = provision_all(root)
    assert all("changed" in out.splitlines()[-1] for out in first), first
    before = snapshot(root)
    second = provision_all(root)
    assert all(out.splitlines()[-1] == "nothing to change" for out in second), second
    assert snapshot(root) == before


def test_private_files_are_0600_and_secrets_never_printed(tmp_path: Path) -> None:
    root = tmp_path / "state"
    outputs = provision_all(root)
    state = State(root)
    unit = state.unit_dir("huu-nghi", "cam1")
    private = [state.ca_key, state.passwd, state.broker / "tls" / "server.key", unit / "edge.env",
               unit / "tls" / "client.key", state.server_dir("gatewatch-server") / "server.env"]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    password = env_value(unit / "edge.env", UNIT_PASSWORD_ENV)
    assert len(password) >= 40  # 32 random bytes, url-safe base64
    assert all(password not in out for out in outputs)
    assert password not in (unit / "unit.yaml").read_text()
    assert password not in state.passwd.read_text()  # only its PBKDF2 hash


def test_starter_configs_validate(tmp_path: Path) -> None:
    from server.config import load_config as load_server_config

    root = tmp_path / "state"
    provision_all(root)
    state = State(root)
    cfg = load_config(state.unit_dir("huu-nghi", "cam1") / "unit.yaml")
    assert (cfg.gate, cfg.unit, cfg.mqtt.username, cfg.mqtt.port) == ("huu-nghi", "cam1", "huu-nghi.cam1", 8883)
    assert cfg.source.kind == "rtsp" and cfg.source.path == "rtsp://10.0.0.9/stream1"
    assert cfg.mqtt.password_env == UNIT_PASSWORD_ENV and cfg.mqtt.tls_cert_file is not None
    server = load_server_config(state.server_dir("gatewatch-server") / "server.yaml")
    assert (server.mqtt.username, server.mqtt.port, server.mqtt.tls_ca_file is not None) == (
        "gatewatch-server", 8884, True)


def test_starter_lane_ids_are_unique_within_a_gate(tmp_path: Path) -> None:
    """A lane belongs to one unit: two units of one gate must not both start with `lane1`."""
    from gatewatch.provision import starter_lane_id

    root = tmp_path / "state"
    ids = []
    for unit in ("cam1", "cam2", "c" * 40, "c" * 39 + "d"):
        provision_unit(root, "huu-nghi", unit, UnitOptions(broker_host="mqtt.langson.example"))
        cfg = load_config(State(root).unit_dir("huu-nghi", unit) / "unit.yaml")
        ids += [lane.id for lane in cfg.lanes]
    assert ids[:2] == ["cam1-l1", "cam2-l1"]
    assert len(set(ids)) == len(ids) == 4 and all(len(i) <= 40 for i in ids)
    assert starter_lane_id("cam1") in (State(root).unit_dir("huu-nghi", "cam1") / "unit.yaml").read_text()


def test_calibrated_unit_config_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "state"
    provision_all(root)
    path = State(root).unit_dir("huu-nghi", "cam1") / "unit.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["lanes"][0]["line"] = {"a": [0.1, 0.7], "b": [0.9, 0.65]}
    path.write_text(yaml.safe_dump(raw))
    provision_all(root)
    assert load_config(path).lanes[0].line.a == (0.1, 0.7)


def test_rotate_password(tmp_path: Path) -> None:
    root = tmp_path / "state"
    provision_all(root)
    env = State(root).unit_dir("huu-nghi", "cam1") / "edge.env"
    old, old_passwd = env.read_text(), State(root).passwd.read_text()
    code, out = gw("provision-unit", "--dir", str(root), "--gate", "huu-nghi", "--unit", "cam1",
                   "--broker-host", "mqtt.gate.test", "--rotate-password")
    assert code == 0, out
    assert env.read_text() != old and State(root).passwd.read_text() != old_passwd
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_lost_broker_entry_is_restored(tmp_path: Path) -> None:
    """A passwd file restored from an old backup lacks the unit: the next run re-adds its hash."""
    root = tmp_path / "state"
    provision_all(root)
    passwd = State(root).passwd
    passwd.write_text("".join(line + "\n" for line in passwd.read_text().splitlines()
                              if not line.startswith("huu-nghi.cam1:")))
    provision_all(root)
    assert any(line.startswith("huu-nghi.cam1:$7$") for line in passwd.read_text().splitlines())


def test_tampered_acl_block_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "state"
    provision_all(root)
    acl = State(root).acl
    acl.write_text(acl.read_text().replace("topic read gatewatch/v1/huu-nghi/+/alert", "topic read gatewatch/v1/#"))
    code, out = gw("provision-unit", "--dir", str(root), "--gate", "huu-nghi", "--unit", "cam1",
                   "--broker-host", "mqtt.gate.test")
    assert code == 2
    assert "ACL block of huu-nghi.cam1 differs" in out and "Traceback" not in out


@pytest.mark.parametrize(("args", "message"), [
    (["--gate", "Huu Nghi", "--unit", "cam1"], "gate 'Huu Nghi' must match ^[a-z0-9]"),
    (["--gate", "huu-nghi", "--unit", "cam1", "--source", "usb:x"], "expected usb:N"),
    (["--gate", "huu-nghi", "--unit", "cam1", "--broker-host", "mqtt gate;rm"], "is not a host name or IP"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    if "--broker-host" not in args:
        args = [*args, "--broker-host", "h"]
    code, out = gw("provision-unit", "--dir", str(tmp_path / "s"), *args)
    assert code == 2
    assert message in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1, out


def test_missing_ca_key_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "state"
    provision_all(root)
    State(root).ca_key.unlink()
    code, out = gw("provision-unit", "--dir", str(root), "--gate", "huu-nghi", "--unit", "cam2",
                   "--broker-host", "mqtt.gate.test")
    assert code == 2 and "restore it from backup" in out


def test_state_folder_inside_a_checkout_is_never_committed(tmp_path: Path) -> None:
    git = require_binary("git")
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    provision_all(tmp_path / "deploy-state")
    status = subprocess.run([git, "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout
    assert status == ""
    assert stat.S_IMODE((tmp_path / "deploy-state").stat().st_mode) == 0o700


def test_starter_model_is_what_the_pi_installer_exports(tmp_path: Path) -> None:
    """unit.yaml names the link deploy/pi/install.sh makes for the manifest's Pi export."""
    root = Path(__file__).resolve().parents[2]
    manifest = yaml.safe_load((root / "models" / "manifest.yaml").read_text())
    model = manifest["models"][manifest["default"]]
    provision_all(tmp_path / "state")
    cfg = load_config(State(tmp_path / "state").unit_dir("huu-nghi", "cam1") / "unit.yaml")
    pi = model["export"]["pi"]
    assert cfg.model.imgsz == pi["imgsz"]
    stem = model["file"].rsplit(".", 1)[0]
    assert cfg.model.path.name == f"{stem}-vehicles-{pi['imgsz']}_{pi['format']}_model"
    script = (root / "deploy" / "pi" / "install.sh").read_text()
    assert 'ncnn_link="$models/${weights_name%.*}-vehicles-${imgsz}_ncnn_model"' in script


def test_home_assistant_discovery_follows_the_unit_config(tmp_path: Path) -> None:
    """The ACL grants discovery topics exactly when the unit's config turns discovery on: a new unit
    from --home-assistant, an existing one from its unit.yaml, switched either way by running again."""
    root = tmp_path / "state"
    args = ["provision-unit", "--dir", str(root), "--gate", "huu-nghi", "--unit", "cam1",
            "--broker-host", "mqtt.gate.test"]
    code, out = gw(*args, "--home-assistant")
    assert code == 0, out
    unit_yaml = State(root).unit_dir("huu-nghi", "cam1") / "unit.yaml"
    assert load_config(unit_yaml).homeassistant.enabled
    grant = "topic readwrite homeassistant/+/huu-nghi_AT_cam1/+/config"
    assert grant in State(root).acl.read_text()

    def edit(homeassistant: dict[str, object] | None) -> None:
        raw = yaml.safe_load(unit_yaml.read_text())
        raw.pop("homeassistant", None)
        unit_yaml.write_text(yaml.safe_dump(raw | ({"homeassistant": homeassistant} if homeassistant else {})))

    edit(None)
    assert not load_config(unit_yaml).homeassistant.enabled
    code, out = gw(*args)
    assert code == 0 and "created ACL block of huu-nghi.cam1" in out, out
    assert grant not in State(root).acl.read_text()
    code, out = gw(*args)
    assert code == 0 and out.splitlines()[-1] == "nothing to change", out

    edit({"enabled": True, "discovery_prefix": "ha"})
    code, out = gw(*args)
    assert code == 0 and "with Home Assistant discovery" in out, out
    acl = State(root).acl.read_text()
    assert "topic readwrite ha/+/huu-nghi_AT_cam1/+/config" in acl and acl.count("user huu-nghi.cam1") == 1
