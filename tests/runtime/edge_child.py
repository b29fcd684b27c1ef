"""`python -m tests.runtime.edge_child CONFIG FIRST N INTERVAL HOLD`: the real service wiring
(`edge.service.cli.serve`, signal handlers included) around a fake pipeline, for tests that
kill or signal a real edge process."""

from __future__ import annotations

import sys
from typing import Any

from edge.config import UnitConfig, load_config
from edge.service.cli import serve, setup_logging
from tests.runtime.helpers import FakePipeline, make_records


def main(argv: list[str]) -> None:
    config, first, n, interval, hold = argv[0], int(argv[1]), int(argv[2]), float(argv[3]), float(argv[4])
    setup_logging("info")
    cfg = load_config(config)

    def factory(c: UnitConfig, on_event: Any) -> FakePipeline:
        return FakePipeline(make_records(n, first=first), interval_s=interval, hold_s=hold)

    serve(cfg, pipeline_factory=factory)


if __name__ == "__main__":
    main(sys.argv[1:])
