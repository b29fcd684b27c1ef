"""Lane ownership: declared lanes are the only ones accepted; learned lanes are pinned, bounded, and kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.config import ValidationConfig
from server.ownership import Ownership
from wire.errors import WireError


def reason(own: Ownership, unit: str, lane: str, directions: list[str], gate: str = "g") -> str | None:
    try:
        own.check(gate, unit, lane, directions)
    except WireError as exc:
        return exc.reason
    return None


def test_declared_lanes_and_directions_are_all_a_unit_may_report() -> None:
    own = Ownership(ValidationConfig(gates={"g": {"u1": {"l1": ["in", "out"]}, "u2": {"l2": ["in"]}}}), None)
    assert reason(own, "u1", "l1", ["in", "out"]) is None
    assert reason(own, "u1", "l1", []) is None
    assert reason(own, "u2", "l1", ["in"]) == "foreign_lane"  # u1's lane
    assert reason(own, "u1", "l9", ["in"]) == "foreign_lane"  # nobody's lane
    assert reason(own, "u2", "l2", ["out"]) == "foreign_direction"
    assert reason(own, "u1", "l1", [f"d{i}" for i in range(1000)]) == "foreign_direction"
    assert own.directions("g", "l1") == ("in", "out")
    assert own.learned() == {}


def test_learned_lanes_are_pinned_to_their_first_unit_and_bounded(tmp_path: Path) -> None:
    cfg = ValidationConfig(gates={"g": ["u1", "u2"]}, max_lanes_per_unit=2, max_directions_per_lane=2)
    own = Ownership(cfg, tmp_path / "lanes.json")
    assert reason(own, "u1", "l1", ["in"]) is None
    assert reason(own, "u2", "l1", ["in"]) == "foreign_lane"
    assert reason(own, "u1", "l1", ["out"]) is None  # a new direction, within the bound
    assert own.directions("g", "l1") == ("in", "out")
    assert reason(own, "u1", "l1", ["sideways"]) == "foreign_direction"
    assert reason(own, "u1", "l2", ["a", "b", "c"]) == "foreign_direction"  # refused whole, nothing pinned
    assert reason(own, "u1", "l2", ["a"]) is None
    assert reason(own, "u1", "l3", ["a"]) == "foreign_lane"  # u1 has its 2 lanes
    assert reason(own, "u2", "l3", ["a"]) is None

    again = Ownership(cfg, tmp_path / "lanes.json")  # a restart keeps the pins
    assert again.learned() == own.learned() == {"g": {
        "l1": {"unit": "u1", "directions": ["in", "out"]}, "l2": {"unit": "u1", "directions": ["a"]},
        "l3": {"unit": "u2", "directions": ["a"]}}}
    assert reason(again, "u2", "l1", ["in"]) == "foreign_lane"
    assert reason(again, "u1", "l4", ["in"]) == "foreign_lane"


def test_a_declaration_wins_over_an_old_pin(tmp_path: Path) -> None:
    path = tmp_path / "lanes.json"
    path.write_text(json.dumps({"schema": 1, "lanes": {"g": {"l1": {"unit": "u2", "directions": ["in"]}}}}))
    own = Ownership(ValidationConfig(gates={"g": {"u1": {"l1": ["in", "out"]}, "u2": None}}), path)
    assert reason(own, "u1", "l1", ["out"]) is None
    assert reason(own, "u2", "l1", ["in"]) == "foreign_lane"


@pytest.mark.parametrize("text", ["{not json", '{"schema": 9, "lanes": {}}', '{"schema": 1, "lanes": {"g": 5}}',
                                  '{"schema": 1, "lanes": {"g": {"L 1": {"unit": "u", "directions": []}}}}'])
def test_a_damaged_pin_file_is_moved_aside_and_lanes_are_learned_again(tmp_path: Path, text: str) -> None:
    path = tmp_path / "lanes.json"
    path.write_text(text)
    own = Ownership(ValidationConfig(gates={"g": ["u1"]}), path)
    assert [p.name.startswith("lanes.json.damaged-") for p in tmp_path.iterdir()] == [True]
    assert reason(own, "u1", "l1", ["in"]) is None
    assert json.loads(path.read_text())["lanes"] == {"g": {"l1": {"unit": "u1", "directions": ["in"]}}}


def test_pins_that_cannot_be_saved_are_kept_in_memory(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    own = Ownership(ValidationConfig(gates={"g": ["u1", "u2"]}), tmp_path / "not-a-dir" / "lanes.json")
    assert reason(own, "u1", "l1", ["in"]) is None
    assert own.unsaved
    assert reason(own, "u2", "l1", ["in"]) == "foreign_lane"
