"""Server config: self-documenting, strict, and explicit about which units may publish."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from server import config as config_module
from server.config import ConfigError, parse_config


def _models() -> list[type[BaseModel]]:
    return [obj for obj in vars(config_module).values()
            if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__ == config_module.__name__
            and obj.model_fields]


def test_every_field_has_a_title_and_a_description() -> None:
    missing = [f"{m.__name__}.{name}" for m in _models() for name, info in m.model_fields.items()
               if not (info.title and info.description)]
    assert len(_models()) >= 10
    assert missing == []


def test_accepting_any_unit_is_an_explicit_decision() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({})
    assert err.value.errors == ["validation: Field required"]
    with pytest.raises(ConfigError) as err:
        parse_config({"validation": {}})
    assert "accept_unknown" in err.value.errors[0]
    assert parse_config({"validation": {"accept_unknown": True}}).validation.accept_unknown


def test_errors_carry_their_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"validation": {"accept_unknown": True},
                      "alerts": {"gates": {"huu-nghi": {"lanes": {"l1": {"congested": {"raise_fro_s": 3}}}}}}})
    assert err.value.errors == ["alerts.gates.huu-nghi.lanes.l1.congested.raise_fro_s: Extra inputs are not permitted"]


def test_shared_subscription_topic() -> None:
    cfg = parse_config({"validation": {"accept_unknown": True}, "mqtt": {"shared_group": "ingest"}})
    assert cfg.mqtt.subscription == "$share/ingest/gatewatch/v1/+/+/+"
