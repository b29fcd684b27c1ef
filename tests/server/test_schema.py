"""The hand-formatted hot path of `server.schema` writes exactly what influxdb-client's `Point` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from server import schema
from wire.payloads import CountsMessage, QueueStats, VehicleClass

ids = st.from_regex(r"^[a-z0-9][a-z0-9_-]{0,12}$", fullmatch=True)
maybe_float = st.one_of(st.none(), st.floats(min_value=0, max_value=30 * 24 * 3600, allow_nan=False))


@st.composite
def counts_messages(draw: st.DrawFn) -> CountsMessage:
    length_max = draw(st.integers(0, 100))
    start = draw(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1),
                              timezones=st.sampled_from([UTC, timezone(timedelta(hours=7)),
                                                         timezone(timedelta(hours=-3, minutes=-30))])))
    return CountsMessage(
        gate=draw(ids), unit=draw(ids), lane=draw(ids), seq=draw(st.integers(0, 2**63 - 1)),
        window_start=start, window_s=draw(st.floats(min_value=0.001, max_value=3600)),
        counts=draw(st.dictionaries(st.sampled_from(list(VehicleClass)),
                                    st.dictionaries(ids, st.integers(0, 100_000), max_size=3), max_size=4)),
        queue=QueueStats(
            length_max=length_max,
            length_mean=draw(st.floats(min_value=0, max_value=length_max)),
            stationary_max=draw(st.integers(0, length_max)), waits_n=draw(st.integers(0, 1000)),
            wait_p50_s=draw(maybe_float), wait_p90_s=draw(maybe_float), wait_max_s=draw(maybe_float),
            clearance_per_min=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=10_000))),
            expected_wait_s=draw(maybe_float),
        ),
        frames=draw(st.integers(0, 100_000)), camera_up=draw(st.floats(min_value=0, max_value=1)),
        loop_count=draw(st.one_of(st.none(), st.integers(0, 100_000))),
    )


def reference_lines(m: CountsMessage, directions: list[str]) -> list[str]:
    """The lines by `Point`, one per point: every class for every direction the lane owns (zero when
    nothing crossed), then the lane's queue point."""

    def point(measurement: str, tags: dict[str, str], fields: dict[str, object]) -> str:
        p = Point(measurement).time(m.window_start, WritePrecision.NS)  # type: ignore[no-untyped-call]
        for k, v in tags.items():
            p.tag(k, v)
        for k, f in fields.items():
            if f is not None:
                p.field(k, f)
        return str(p.to_line_protocol())

    ids = {"gate": m.gate, "unit": m.unit, "lane": m.lane}
    owned = sorted({*directions, *(d for dirs in m.counts.values() for d in dirs)})
    out = [point(schema.LANE_COUNTS, {**ids, "class": c.value, "direction": d},
                 {"count": m.counts.get(c, {}).get(d, 0)})
           for c in VehicleClass for d in owned]
    q = m.queue
    out.append(point(schema.LANE_QUEUE, ids, {
        "window_s": float(m.window_s), "total": m.total(), "length_max": q.length_max,
        "length_mean": float(q.length_mean), "stationary_max": q.stationary_max, "waits_n": q.waits_n,
        "wait_p50_s": q.wait_p50_s, "wait_p90_s": q.wait_p90_s, "wait_max_s": q.wait_max_s,
        "clearance_per_min": q.clearance_per_min, "expected_wait_s": q.expected_wait_s, "frames": m.frames,
        "camera_up": float(m.camera_up), "loop_count": m.loop_count, "seq": m.seq,
    }))
    return out


@settings(max_examples=300, deadline=None)
@given(counts_messages(), st.lists(ids, max_size=3))
def test_window_record_lines_equal_points(m: CountsMessage, directions: list[str]) -> None:
    assert schema.counts_lines(m, directions) == reference_lines(m, directions)


def test_a_record_writes_every_class_and_direction_its_lane_owns() -> None:
    m = CountsMessage(gate="g", unit="u", lane="l", seq=1, window_start=datetime(2026, 1, 1, tzinfo=UTC),
                      window_s=10, counts={VehicleClass.CAR: {"in": 2}})
    counts = {line.split(" ")[0]: line.split(" ")[1] for line in schema.counts_lines(m, ["in", "out"])[:-1]}
    assert len(counts) == 8  # 4 classes x 2 directions
    assert counts["lane_counts,class=car,direction=in,gate=g,lane=l,unit=u"] == "count=2i"
    assert set(counts.values()) == {"count=0i", "count=2i"}


def test_epoch_ns_is_exact_to_the_microsecond() -> None:
    at = datetime(2026, 11, 24, 8, 0, 0, 123457, tzinfo=timezone(timedelta(hours=7)))
    assert schema.epoch_ns(at) == 1795482000123457000
