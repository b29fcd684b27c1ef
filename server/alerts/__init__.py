"""Alert rules, evaluated on the message stream rather than by querying the database.

Time is the records' own: a window "happens" at window_start + window_s, a status or health
message at its `at`. Nothing here reads the wall clock, so replaying the same records gives
the same raises and clears at the same instants, and a test can drive a day of traffic in
milliseconds. (Only `check_silence`, for units that stopped talking altogether, needs a clock
the caller supplies: silence produces no timestamps of its own.)

Reading order: `base` (what rules share: events, lane and unit records, hooks), `rules/` (one
module per rule, each with its config model and state: congested with hysteresis, stalled,
unit offline, camera down, camera vs loop sensor), `gate_level` (the gate's colour on the
Vietnam single-window scale), `config` (the `alerts` section, assembled from the rules), and
`engine`. A lane's published state is all of its active alerts plus the gate colour; its level
is the worst of them.
"""

from server.alerts.base import AlertEvent, Rule, RuleConfig
from server.alerts.config import AlertsConfig, GateAlerts, LaneRules
from server.alerts.engine import AlertEngine, UnitMessage, expected_wait
from server.alerts.gate_level import GATE_LEVEL, GATE_SCOPE, GateLevelConfig
from server.alerts.rules import RULES
from server.alerts.rules.camera_down import CameraDown
from server.alerts.rules.congested import Congested
from server.alerts.rules.loop_mismatch import LoopMismatch
from server.alerts.rules.stalled import Stalled
from server.alerts.rules.unit_offline import UnitOffline

CONGESTED = Congested.name
STALLED = Stalled.name
UNIT_OFFLINE = UnitOffline.name
CAMERA_DOWN = CameraDown.name
LOOP_MISMATCH = LoopMismatch.name

__all__ = [
    "CAMERA_DOWN",
    "CONGESTED",
    "GATE_LEVEL",
    "GATE_SCOPE",
    "LOOP_MISMATCH",
    "RULES",
    "STALLED",
    "UNIT_OFFLINE",
    "AlertEngine",
    "AlertEvent",
    "AlertsConfig",
    "GateAlerts",
    "GateLevelConfig",
    "LaneRules",
    "Rule",
    "RuleConfig",
    "UnitMessage",
    "expected_wait",
]
