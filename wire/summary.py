"""The cross-gate view on the wire: each gate's summary and the province-wide ranking of gates.

Published by the server, retained, under the server's own `_province` scope (a leading `_` is
never an id, so it cannot clash with a gate, and `wire.topics.is_own_output` already treats
`gatewatch/v1/_...` as the server's own output):

- `gatewatch/v1/_province/<gate>/summary`: one gate (`GateSummary`);
- `gatewatch/v1/_province/summary`: every gate ranked by the expected wait of a truck arriving now
  (`ProvinceSummary`), the answer to "which gate do I send the next truck to".

The figures are defined in server/summary.py; the InfluxDB measurements that hold them carry the
same version (`gate_summary_v1`, `province_summary_v1`), so a redefinition starts new series
instead of mixing with the old ones in a panel.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from wire.payloads import SCHEMA_VERSION, Id
from wire.topics import PREFIX, check_id

PROVINCE = f"{PREFIX}/_province"
PROVINCE_SUMMARY = f"{PROVINCE}/summary"


def gate_summary_topic(gate: str) -> str:
    return f"{PROVINCE}/{check_id(gate, 'gate')}/summary"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, alias="schema", description="payload schema version")


class GateSummary(_Model):
    """One gate over the trailing window, as of `at`."""

    kind: Literal["gate_summary"] = "gate_summary"
    gate: Id
    at: AwareDatetime = Field(description="the summary's time: windows that ended by then are in it")
    window_s: float = Field(gt=0, description="rates are measured over this trailing window")
    lanes: NonNegativeInt = Field(description="lanes with at least one window in the trailing window")
    lanes_reporting: NonNegativeInt = Field(description="lanes whose latest window is fresh (queue and wait)")
    trucks_arriving_per_h: NonNegativeFloat = Field(description="truck crossings in arriving directions, per hour")
    trucks_cleared_per_h: NonNegativeFloat = Field(description="truck crossings in cleared directions, per hour")
    vehicles_cleared_per_h: NonNegativeFloat = Field(description="all vehicles in cleared directions, per hour")
    vehicles_queued: NonNegativeFloat = Field(description="vehicles in the reporting lanes' queue zones")
    expected_wait_s: NonNegativeFloat | None = Field(
        None, description="queued / clearance rate: the wait of a truck joining now; null when nothing clears"
    )
    rank: int | None = Field(None, ge=1, description="1 = the shortest expected wait in the province")


class RankedGate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gate: Id
    rank: int = Field(ge=1)
    expected_wait_s: NonNegativeFloat | None
    trucks_cleared_per_h: NonNegativeFloat
    vehicles_queued: NonNegativeFloat


class ProvinceSummary(_Model):
    """Every gate with a fresh lane, best first: a known wait before an unknown one, shorter
    before longer, then more trucks cleared per hour, then the gate id."""

    kind: Literal["province_summary"] = "province_summary"
    at: AwareDatetime
    window_s: float = Field(gt=0)
    ranking: list[RankedGate] = Field(default_factory=list)
    best_gate: Id | None = Field(None, description="the first of the ranking, if its wait is known")
