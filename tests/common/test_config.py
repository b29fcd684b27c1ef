"""The one config style of edge and server: strict models, renamed keys that say what to write
instead, one loader with one error format, and secrets named by environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from common.config import DEFAULT_PASSWORD_ENV, MqttConnection, load_config, secret_from_env, validate_config
from common.errors import EXIT_USAGE, ConfigError, GatewatchError
from edge.config import MqttConfig as EdgeMqtt
from edge.config import UnitConfig
from server.config import MqttConfig as ServerMqtt
from server.config import ServerConfig

UNIT: dict[str, Any] = {
    "gate": "huu-nghi",
    "unit": "cam1",
    "source": {"kind": "file", "path": "clip.mp4"},
    "lanes": [{"id": "l1", "line": {"a": [0, 0.5], "b": [1, 0.5]}}],
}


@pytest.mark.parametrize(("old", "new"), [
    ("tls_ca", "tls_ca_file"), ("tls_cert", "tls_cert_file"), ("tls_key", "tls_key_file"), ("password", "password_env"),
])
@pytest.mark.parametrize("model", [UnitConfig, ServerConfig])
def test_an_old_mqtt_key_is_an_error_that_names_the_new_one(model: type[BaseModel], old: str, new: str) -> None:
    raw: dict[str, Any] = {**UNIT} if model is UnitConfig else {"validation": {"accept_unknown": True}}
    raw["mqtt"] = {"host": "broker", old: "/etc/gatewatch/tls/ca.crt"}
    with pytest.raises(ConfigError) as err:
        validate_config(model, raw, "unit.yaml")
    assert len(err.value.errors) == 1
    (line,) = err.value.errors
    assert line.startswith("mqtt: ") and f"{old} is no longer read" in line and new in line, line


def test_edge_and_server_share_the_connection_settings() -> None:
    for model in (EdgeMqtt, ServerMqtt):
        assert issubclass(model, MqttConnection)
        cfg = model()
        assert (cfg.password_env, cfg.tls_ca_file, cfg.keepalive_s) == (DEFAULT_PASSWORD_ENV, None, 30)


def test_one_problem_is_one_line_several_are_listed_with_their_paths(tmp_path: Path) -> None:
    path = tmp_path / "unit.yaml"
    path.write_text("gate: huu-nghi\n")
    with pytest.raises(ConfigError) as err:
        load_config(UnitConfig, path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}: 3 errors"
    assert lines[1:] == ["  unit: Field required", "  source: Field required", "  lanes: Field required"]
    assert err.value.exit_code == EXIT_USAGE and isinstance(err.value, GatewatchError)

    with pytest.raises(ConfigError) as err:
        validate_config(UnitConfig, {**UNIT, "colour": "red"}, "unit.yaml")
    assert str(err.value) == "unit.yaml: colour: Extra inputs are not permitted"


@pytest.mark.parametrize(("text", "message"), [
    (None, "config file not found"),
    ("mqtt: [unclosed\n", "not valid YAML"),
    ("- a list\n", "expected a mapping at the top level, got list"),
])
def test_unreadable_files_are_one_line(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "cfg.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(ServerConfig, path)
    assert str(err.value).startswith(f"{path}: {message}") and "\n" not in str(err.value)


def test_an_empty_file_reports_what_is_required(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as err:
        load_config(ServerConfig, path)
    assert err.value.errors == ["validation: Field required"]


def test_secrets_come_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_SECRET", "s3cret")
    monkeypatch.delenv("GW_TEST_UNSET", raising=False)
    assert secret_from_env("GW_TEST_SECRET", "influx.token_env") == "s3cret"
    assert secret_from_env(None, "influx.token_env") is None
    assert secret_from_env("GW_TEST_UNSET", "influx.token_env", required=False) is None
    with pytest.raises(ConfigError) as err:
        secret_from_env("GW_TEST_UNSET", "influx.token_env")
    assert str(err.value) == "influx.token_env: environment variable GW_TEST_UNSET is not set"
    cfg = EdgeMqtt(username="huu-nghi.cam1", password_env="GW_TEST_SECRET")
    assert cfg.password(required=True) == "s3cret"
    assert "s3cret" not in cfg.model_dump_json()


def test_every_shared_field_has_a_title_and_a_description() -> None:
    missing = [name for name, info in MqttConnection.model_fields.items() if not (info.title and info.description)]
    assert missing == []
