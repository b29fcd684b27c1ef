"""Server config: self-documenting, strict, and explicit about which units may publish."""

from __future__ import annotations

import inspect
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from server.config import ConfigError, ServerConfig, parse_config


def _models() -> list[type[BaseModel]]:
    """Every model a server.yaml reaches, wherever it is defined (each alert rule defines its own)."""
    found: list[type[BaseModel]] = []
    todo: list[Any] = [ServerConfig]
    while todo:
        t = todo.pop()
        if inspect.isclass(t) and issubclass(t, BaseModel):
            if t not in found:
                found.append(t)
                todo += [info.annotation for info in t.model_fields.values()]
        else:
            todo += get_args(t)
    return found


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
