"""What every alert rule shares: the event it emits, the lane and unit records it reads, the base of
its config model, and the hooks the engine calls.

A rule is one class in one module of `server/alerts/rules/`. It owns its config model (its
section under `alerts.rules`, overridable per gate and lane), its own per-lane and per-unit state,
and its reactions, as hooks. What rules share (which lanes exist, which units feed them, what is
active, raising and clearing, which lanes changed) stays with the engine, which rules reach only
through the `Alerts` protocol, so a rule can be read and tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

from pydantic import BaseModel

from common.config import StrictModel
from wire.payloads import ActiveAlert, AlertLevel, HealthMessage, StatusMessage, WindowRecord

#: (gate, lane)
LaneKey = tuple[str, str]
#: (gate, unit)
UnitKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One raise or clear, stamped with stream time."""

    gate: str
    lane: str
    rule: str
    at: datetime
    level: AlertLevel
    active: bool
    expected_wait_s: float | None
    text: str


class RuleConfig(StrictModel):
    """Base of a rule's config model."""

    def problem(self) -> str | None:
        """Why these settings cannot work, or None. Judged on each lane's merged rules, never on an
        override alone: an override may set only some keys and rely on the defaults for the rest."""
        return None


C = TypeVar("C", bound=RuleConfig)


class LaneRulesBase(StrictModel):
    """Rules of one lane, one field per rule named after it. The fields come from the rules found in
    `server/alerts/rules/` (see `server.alerts.config`), so the type checker cannot see them: rule code
    reads its settings typed, with `of`."""

    #: config model -> field name, computed once per model: `of` runs for every rule on every record
    _field_of: ClassVar[dict[Any, str]] = {}

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._field_of = {info.annotation: name for name, info in cls.model_fields.items()}

    def of(self, model: type[C]) -> C:
        """The settings of the rule whose config model is `model`."""
        value = getattr(self, self._field_of.get(model, ""), None)
        if not isinstance(value, model):
            raise KeyError(f"no {model.__name__} among the lane rules")
        return value

    def merged(self, override: Self) -> Self:
        """Apply only the fields an override actually set, rule by rule."""
        update: dict[str, Any] = {}
        for name in override.model_fields_set:
            mine: BaseModel = getattr(self, name)
            theirs: BaseModel = getattr(override, name)
            update[name] = mine.model_copy(update={k: getattr(theirs, k) for k in theirs.model_fields_set})
        return self.model_copy(update=update)


@dataclass
class Lane:
    """What the engine knows of one lane, shared by every rule."""

    gate: str
    lane: str
    rules: LaneRulesBase
    units: set[str] = field(default_factory=set)
    last_start: datetime | None = None
    last_end: datetime | None = None
    #: the queue length by the congested rule's metric; the gate colour sums it
    queue: float = 0.0
    wait_s: float | None = None
    active: dict[str, ActiveAlert] = field(default_factory=dict)

    @property
    def key(self) -> LaneKey:
        return (self.gate, self.lane)

    def level(self, gate_level: AlertLevel) -> AlertLevel:
        levels = [a.level for a in self.active.values()] + [gate_level]
        return max(levels, key=lambda lv: lv.rank)


@dataclass
class Unit:
    """When a unit last spoke by status and by health; the stamps also keep re-deliveries out."""

    status_at: datetime | None = None
    health_at: datetime | None = None
    health_interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A lane's next window record, as the rules see it."""

    unit: str
    record: WindowRecord
    start: datetime
    end: datetime
    #: time nobody observed lies between this window and the lane's previous one: durations must not bridge it
    gap: bool


class Alerts(Protocol):
    """The engine's shared part, as rules use it."""

    def raise_alert(self, lane: Lane, rule: str, at: datetime, level: AlertLevel, detail: str) -> list[AlertEvent]:
        """Raise `rule` on the lane unless it is active already."""
        ...

    def clear_alert(self, lane: Lane, rule: str, at: datetime, detail: str) -> list[AlertEvent]:
        """Clear `rule` on the lane if it is active."""
        ...

    def unit(self, gate: str, unit: str) -> Unit: ...

    def units(self) -> Iterable[tuple[UnitKey, Unit]]: ...

    def unit_lanes(self, gate: str, unit: str) -> list[Lane]:
        """The lanes a unit has sent records for."""
        ...


class Rule:
    """One alert rule. A subclass in a new module of `server/alerts/rules/` is found there, configured
    under `alerts.rules.<name>` (and per gate and lane) by its `config_model`, and called by the engine
    in `order`. Every hook returns the raises and clears it caused; by default it does nothing.
    """

    #: the config key, and the `rule` of its alerts
    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    config_model: ClassVar[type[RuleConfig]]
    #: place in the config and in evaluation, lowest first
    order: ClassVar[int]

    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts

    def on_unit_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        """A record is news from its unit before it is a window of its lane: every rule hears it here
        before any rule judges the window in `on_record`."""
        return []

    def on_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        """The lane's next window, in order (re-delivered and late windows never get here)."""
        return []

    def on_status(self, message: StatusMessage) -> list[AlertEvent]:
        """A unit's status, newer than the last one the engine saw."""
        return []

    def on_health(self, message: HealthMessage) -> list[AlertEvent]:
        """A unit's health, newer than the last one the engine saw."""
        return []

    def on_silence(self, now: datetime) -> list[AlertEvent]:
        """Time has passed with nothing to show for it (see `AlertEngine.check_silence`)."""
        return []
