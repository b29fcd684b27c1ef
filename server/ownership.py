"""Which lanes, and which directions on them, each unit may report: declared, or learned once and pinned.

A unit speaks only for itself. The broker's ACL proves which unit published, but not which lanes
that unit watches: without this check one unit can push another's lane into "congested", and a
unit sending thousands of lane or direction ids creates as many retained alert topics and
database series. A lane belongs to exactly one unit of its gate.

Two ways to know the lanes:

- **Declared** (`validation.gates.<gate>.<unit>: {lane: [directions]}`): the installer drew the
  lanes in the unit's config, and the server's config says the same. Nothing else is accepted.
- **Learned and pinned**, for units listed without lanes (and for any unit under
  `accept_unknown`): the first records of a lane make it the unit's, with the directions they
  carry, up to `max_lanes_per_unit` lanes and `max_directions_per_lane` directions. The pins are
  kept in `lanes_file`, so a restart does not reopen the race for a lane. This keeps older
  configs (a list of units per gate) working and bounded. To hand a lane to another unit (a
  camera moved), delete its entry from the file, or declare it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path

from server.config import ValidationConfig
from wire.errors import WireError
from wire.topics import ID_PATTERN

log = logging.getLogger(__name__)

#: (gate, lane)
LaneKey = tuple[str, str]
FILE_SCHEMA = 1


class Ownership:
    def __init__(self, config: ValidationConfig, lanes_file: Path | None) -> None:
        self.config = config
        self.lanes_file = lanes_file
        self._owner: dict[LaneKey, str] = {}
        self._directions: dict[LaneKey, tuple[str, ...]] = {}
        self._learned: set[LaneKey] = set()
        #: learned lanes per (gate, unit), for the bound
        self._count: Counter[tuple[str, str]] = Counter()
        self.unsaved = False
        for gate, units in config.gates.items():
            if isinstance(units, dict):
                for unit, lanes in units.items():
                    for lane, directions in (lanes or {}).items():
                        self._owner[(gate, lane)] = unit
                        self._directions[(gate, lane)] = tuple(sorted(directions))
        self._load()

    def directions(self, gate: str, lane: str) -> tuple[str, ...]:
        """Every direction the lane owns (its counts are written for each, zero or not)."""
        return self._directions.get((gate, lane), ())

    def check(self, gate: str, unit: str, lane: str, directions: Collection[str]) -> None:
        """Raise `WireError` unless `unit` owns `lane` and every one of `directions` on it; a unit
        whose lanes are learned claims a free lane, or a new direction on its own lane, here."""
        key = (gate, lane)
        owner = self._owner.get(key)
        declared = self.config.declared(gate, unit)
        if owner is not None and owner != unit:
            raise WireError("foreign_lane", f"lane {lane!r} of gate {gate!r} belongs to unit {owner!r}")
        if owner is None and declared is not None:
            raise WireError("foreign_lane", f"lane {lane!r} is not among unit {unit!r}'s lanes {sorted(declared)}")
        have = self._directions.get(key, ())
        new = sorted(set(directions) - set(have))
        if not new:
            return
        if key not in self._learned and owner is not None:
            raise WireError("foreign_direction", f"lane {lane!r} counts directions {list(have)}, not {new[:5]}")
        limit = self.config.max_directions_per_lane
        if len(have) + len(new) > limit:
            raise WireError("foreign_direction", f"lane {lane!r} would have {len(have) + len(new)} directions "
                                                 f"> validation.max_directions_per_lane {limit}")
        if owner is None and self._count[(gate, unit)] >= self.config.max_lanes_per_unit:
            raise WireError("foreign_lane", f"unit {unit!r} already has {self._count[(gate, unit)]} lanes "
                                            f"(validation.max_lanes_per_unit)")
        self._pin(gate, unit, lane, (*have, *new))

    def learned(self) -> dict[str, dict[str, dict[str, object]]]:
        out: dict[str, dict[str, dict[str, object]]] = {}
        for gate, lane in sorted(self._learned):
            out.setdefault(gate, {})[lane] = {"unit": self._owner[(gate, lane)],
                                              "directions": list(self._directions[(gate, lane)])}
        return out

    # -- the pins ------------------------------------------------------------------------------

    def _pin(self, gate: str, unit: str, lane: str, directions: tuple[str, ...]) -> None:
        key = (gate, lane)
        if key not in self._learned:
            self._learned.add(key)
            self._count[(gate, unit)] += 1
            log.info("lane %s/%s pinned to unit %s", gate, lane, unit)
        self._owner[key] = unit
        self._directions[key] = tuple(sorted(directions))
        self._save()

    def _save(self) -> None:
        """Write the pins atomically; a full disk keeps them in memory and tries again next time."""
        if self.lanes_file is None:
            return
        tmp = self.lanes_file.with_name(f".{self.lanes_file.name}.tmp")
        try:
            self.lanes_file.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w") as f:
                json.dump({"schema": FILE_SCHEMA, "lanes": self.learned()}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.lanes_file)
        except OSError as exc:
            if not self.unsaved:
                log.error("cannot save learned lanes to %s (kept in memory, retried on the next one): %s",
                          self.lanes_file, exc)
            self.unsaved = True
            return
        self.unsaved = False

    def _load(self) -> None:
        path = self.lanes_file
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            if data.get("schema") != FILE_SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r}, expected {FILE_SCHEMA}")
            pins = [(gate, lane, str(pin["unit"]), tuple(sorted(map(str, pin["directions"]))))
                    for gate, lanes in data["lanes"].items() for lane, pin in lanes.items()]
            bad = [x for g, ln, u, ds in pins for x in (g, ln, u, *ds) if not re.match(ID_PATTERN, x)]
            if bad:
                raise ValueError(f"ids {bad[:5]} must match {ID_PATTERN}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            log.error("learned lanes file %s is unreadable (%s); moved to %s, lanes will be learned again",
                      path, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            return
        for gate, lane, unit, directions in pins:
            key = (gate, lane)
            if key in self._owner:
                log.warning("learned lane %s/%s of %s ignored: the config declares it for %s",
                            gate, lane, unit, self._owner[key])
                continue
            if self.config.declared(gate, unit) is not None:
                log.warning("learned lane %s/%s ignored: unit %s now has declared lanes", gate, lane, unit)
                continue
            self._owner[key] = unit
            self._directions[key] = directions
            self._learned.add(key)
            self._count[(gate, unit)] += 1
