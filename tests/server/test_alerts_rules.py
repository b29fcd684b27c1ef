"""Alert rules as units: a rule is one module in server/alerts/rules/, found, configured and called from there."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.alerts import RULES, AlertsConfig, LaneRules
from server.alerts.rules import discover

ROOT = Path(__file__).resolve().parents[2]

LONG_WAIT = '''
"""A rule that is not part of gatewatch: a lane whose expected wait is too long."""

from pydantic import Field

from server.alerts.base import AlertEvent, Lane, Rule, RuleConfig, Window
from wire.payloads import AlertLevel


class LongWaitRule(RuleConfig):
    enabled: bool = Field(True, title="Enabled", description="raise long_wait alerts in this scope")
    max_wait_s: float = Field(600, gt=0, title="Max expected wait (s)", description="raised at or above this")
    level: AlertLevel = Field(AlertLevel.RED, title="Level while active", description="colour while raised")


class LongWait(Rule):
    name = "long_wait"
    title = "Long wait"
    description = "expected wait too long"
    config_model = LongWaitRule
    order = 60

    def on_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        rule = lane.rules.of(LongWaitRule)
        if not rule.enabled or lane.wait_s is None:
            return []
        detail = f"expected wait {lane.wait_s:g} s"
        if lane.wait_s >= rule.max_wait_s:
            return self.alerts.raise_alert(lane, self.name, window.end, rule.level, detail)
        return self.alerts.clear_alert(lane, self.name, window.end, detail)
'''

DRIVE = '''
import json, sys
from datetime import UTC, datetime, timedelta

import server
from server.alerts import RULES, AlertEngine
from common.errors import ConfigError
from server.config import ServerConfig, parse_config
from wire.payloads import CountsMessage, QueueStats

assert server.__file__.startswith(sys.argv[1]), server.__file__
out = {"rules": [r.name for r in RULES]}
base = {"validation": {"accept_unknown": True}}
try:
    parse_config({**base, "alerts": {"rules": {"long_wait": {"max_wiat_s": 1}}}})
except ConfigError as exc:
    out["typo"] = exc.errors
cfg = parse_config({**base, "alerts": {"rules": {"long_wait": {"max_wait_s": 100}},
                                       "gates": {"g": {"lanes": {"l2": {"long_wait": {"enabled": False}}}}}}})
out["defaults"] = parse_config(base).alerts.rules.long_wait.model_dump(mode="json")
out["title"] = ServerConfig.model_json_schema()["$defs"]["LaneRules"]["properties"]["long_wait"]["title"]
engine = AlertEngine(cfg.alerts)
t0 = datetime(2024, 5, 1, tzinfo=UTC)
events = []
for i, wait in enumerate([50, 150, 150, 50]):
    for lane in ("l1", "l2"):
        m = CountsMessage(gate="g", unit="u1", lane=lane, seq=i, window_start=t0 + timedelta(seconds=10 * i),
                          window_s=10, counts={}, queue=QueueStats(length_max=1, length_mean=1, stationary_max=0,
                                                                   expected_wait_s=wait), frames=1, camera_up=1)
        events += [[i, e.lane, e.active, e.level.value, e.text] for e in engine.on_message(m) if e.rule == "long_wait"]
out["events"] = events
out["state"] = [a.rule for a in engine.state("g", "l1", t0).active]
print(json.dumps(out))
'''


def test_a_rule_in_a_new_module_is_found_configured_and_called(tmp_path: Path) -> None:
    """The claim "a new rule is one new file": a copy of the packages plus one module, and nothing else edited."""
    for package in ("common", "server", "wire"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "server/alerts/rules/long_wait.py").write_text(LONG_WAIT)
    r = subprocess.run([sys.executable, "-c", DRIVE, str(tmp_path)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rules"] == [*(rule.name for rule in RULES), "long_wait"]
    assert out["typo"] == ["alerts.rules.long_wait.max_wiat_s: Extra inputs are not permitted"]
    assert out["defaults"] == {"enabled": True, "max_wait_s": 600.0, "level": "red"}
    assert out["title"] == "Long wait"
    # l2 has it switched off by its lane override; l1 raises at 150 s and clears at 50 s
    assert out["events"] == [[1, "l1", True, "red", "expected wait 150 s"],
                             [3, "l1", False, "red", "expected wait 50 s"]]
    assert out["state"] == []


def test_the_lane_rules_are_the_rules_found_in_their_order() -> None:
    assert [r.name for r in RULES] == ["congested", "stalled", "unit_offline", "camera_down", "loop_mismatch"]
    assert list(LaneRules.model_fields) == [r.name for r in RULES]
    defaults = AlertsConfig().rules
    for rule in RULES:
        assert defaults.of(rule.config_model) == rule.config_model()
        assert LaneRules.model_fields[rule.name].title == rule.title


def test_two_rules_with_one_name_fail_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "twin_rules"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(LONG_WAIT)
    (package / "b.py").write_text(LONG_WAIT.replace("class LongWait(Rule)", "class LongWaitAgain(Rule)"))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="two alert rules are named 'long_wait'"):
        discover("twin_rules", [str(package)])
