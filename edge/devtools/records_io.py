"""Write window records as JSON lines or CSV (chosen by file suffix)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import IO, Any

from wire.payloads import WindowRecord


def flatten(record: WindowRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "gate": record.gate,
        "unit": record.unit,
        "lane": record.lane,
        "window_start": record.window_start.isoformat(),
        "window_s": record.window_s,
        "frames": record.frames,
        "camera_up": record.camera_up,
        "total": record.total(),
    }
    row["counts"] = json.dumps({c.value: d for c, d in record.counts.items()}, sort_keys=True)
    for k, v in record.queue.model_dump().items():
        row[f"queue_{k}"] = v
    return row


class RecordWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = path.open("w", newline="")
        self._csv: csv.DictWriter[str] | None = None
        self.is_csv = path.suffix.lower() == ".csv"

    def write(self, record: WindowRecord) -> None:
        if not self.is_csv:
            self._f.write(record.model_dump_json() + "\n")
            return
        row = flatten(record)
        if self._csv is None:
            self._csv = csv.DictWriter(self._f, fieldnames=list(row))
            self._csv.writeheader()
        self._csv.writerow(row)

    def close(self) -> None:
        self._f.close()


def read_jsonl(path: Path) -> list[WindowRecord]:
    return [WindowRecord.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
