"""The `alerts` section of server.yaml: defaults for every lane, overrides per gate and per lane, and
the gate colour's thresholds.

`LaneRules` is assembled from the rules found in `server/alerts/rules/`, one field per rule, in
their order, each with the rule's own config model, title and description; so a new rule's
settings appear here, with overrides and error paths, without an edit to this file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, create_model, model_validator

from common.config import StrictModel
from server.alerts.base import LaneRulesBase, Rule
from server.alerts.gate_level import GateLevelConfig
from server.alerts.rules import RULES


def lane_rules_model(rules: Sequence[type[Rule]]) -> type[LaneRulesBase]:
    """The lane rules model with one field per rule, defaulting to the rule's own defaults."""
    fields: dict[str, Any] = {
        rule.name: (rule.config_model, Field(default_factory=rule.config_model, title=rule.title,
                                             description=rule.description))
        for rule in rules
    }
    return create_model(
        "LaneRules", __base__=LaneRulesBase, __module__=__name__,
        __doc__="Rules of one lane; in an override only the keys written replace the defaults.", **fields,
    )


if TYPE_CHECKING:  # the fields are only known at run time; to the type checker they are LaneRulesBase's
    LaneRules = LaneRulesBase
else:
    LaneRules = lane_rules_model(RULES)


class GateAlerts(StrictModel):
    rules: LaneRules = Field(
        default_factory=LaneRules,
        title="Overrides for every lane of this gate",
        description="only the keys written replace alerts.rules",
    )
    lanes: dict[str, LaneRules] = Field(
        default_factory=dict,
        title="Overrides per lane id",
        description="lane id -> rule overrides on top of this gate's rules",
    )
    level: GateLevelConfig | None = Field(
        None,
        title="Gate colour thresholds (default: alerts.level)",
        description="this gate's colour thresholds; alerts.level when unset",
    )


class AlertsConfig(StrictModel):
    valid_s: float = Field(
        60,
        gt=0,
        le=86_400,
        title="Alert validity (s)",
        description="a lane light goes 'unknown' after this; the state is republished every valid_s/2",
    )
    rules: LaneRules = Field(
        default_factory=LaneRules,
        title="Default rules for every lane",
        description="rules of every lane unless a gate or lane overrides them",
    )
    level: GateLevelConfig = Field(
        default_factory=GateLevelConfig,
        title="Default gate colour thresholds",
        description="colour thresholds of every gate unless it sets its own",
    )
    gates: dict[str, GateAlerts] = Field(
        default_factory=dict, title="Overrides per gate", description="gate id -> overrides"
    )
    silence_wall_clock: bool = Field(
        True,
        title="Detect silent units by wall clock",
        description="also advance the offline check with the server clock; off for deterministic replays",
    )

    def lane_rules(self, gate: str, lane: str) -> LaneRules:
        rules = self.rules
        g = self.gates.get(gate)
        if g is not None:
            rules = rules.merged(g.rules)
            if lane in g.lanes:
                rules = rules.merged(g.lanes[lane])
        return rules

    def gate_level(self, gate: str) -> GateLevelConfig:
        g = self.gates.get(gate)
        return g.level if g is not None and g.level is not None else self.level

    @model_validator(mode="after")
    def _rules_can_work(self) -> AlertsConfig:
        """Each rule judges its own settings, as merged for every scope (see `RuleConfig.problem`)."""
        lanes = [("rules", self.rules)]
        for gate, g in self.gates.items():
            lanes.append((f"gates.{gate}.rules", self.lane_rules(gate, "\0")))
            lanes += [(f"gates.{gate}.lanes.{lane}", self.lane_rules(gate, lane)) for lane in g.lanes]
        for where, rules in lanes:
            for rule in RULES:
                problem = rules.of(rule.config_model).problem()
                if problem is not None:
                    raise ValueError(f"{where}.{rule.name}: {problem}")
        return self
