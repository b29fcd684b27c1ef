"""Server config: self-documenting, strict, and explicit about which units may publish."""

from __future__ import annotations

import inspect
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from common.errors import ConfigError
from server.config import ServerConfig, parse_config


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


def test_shared_subscriptions_are_refused_with_the_way_to_scale() -> None:
    # a shared subscription deals one unit's seqs out to several servers: none could acknowledge them
    with pytest.raises(ConfigError) as err:
        parse_config({"validation": {"accept_unknown": True}, "mqtt": {"shared_group": "ingest"}})
    assert len(err.value.errors) == 1
    assert "mqtt.shared_group is no longer supported" in err.value.errors[0]
    assert "mqtt.topic: gatewatch/v1/<gate>/+/+" in err.value.errors[0]


def test_lanes_and_directions_per_unit_and_the_older_list_form() -> None:
    cfg = parse_config({"validation": {"gates": {
        "huu-nghi": {"hn-u1": {"hn-l1": ["in", "out"], "hn-l2": ["in"]}, "hn-u2": None},
        "tan-thanh": ["tt-u1", "tt-u2"],  # before lanes were declared: still accepted, lanes learned
    }}})
    v = cfg.validation
    assert v.declared("huu-nghi", "hn-u1") == {"hn-l1": ["in", "out"], "hn-l2": ["in"]}
    assert v.declared("huu-nghi", "hn-u2") is None and v.declared("tan-thanh", "tt-u1") is None
    assert v.known("tan-thanh") == frozenset({"tt-u1", "tt-u2"}) and v.known("chi-ma") is None
    assert cfg.lanes_file == cfg.spool.path.with_name("server-lanes.json")


@pytest.mark.parametrize(("gates", "error"), [
    ({"g": {"u1": {"l1": ["in"]}, "u2": {"l1": ["out"]}}}, "g: lane l1 is declared for both u1 and u2"),
    ({"g": {"u1": {"l1": []}}}, "g.u1.l1: list each direction once, at least one"),
    ({"g": {"u1": {"l1": ["in", "in"]}}}, "g.u1.l1: list each direction once, at least one"),
    ({"g": {"u1": {"l1": ["a", "b", "c", "d", "e"]}}}, "g.u1.l1: 5 directions > max_directions_per_lane"),
    ({"g": {"u1": {"Lane 1": ["in"]}}}, "g.u1: lane 'Lane 1' must match"),
    ({"g": {"U1": None}}, "g: unit 'U1' must match"),
])
def test_lane_declarations_that_cannot_work(gates: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"validation": {"gates": gates}})
    assert len(err.value.errors) == 1 and error in err.value.errors[0], err.value.errors
