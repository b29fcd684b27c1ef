"""Unit configuration: one YAML file per edge unit, validated strictly.

In the project's one config style (common.config): strict models, so a typo in a field name at
a gate fails loudly at start-up (`gatewatch edge --validate-config`) instead of silently falling
back to a default; the broker password named by environment variable, never written here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from common.config import MetricsConfig, MqttConnection
from common.config import StrictModel as _Strict
from common.config import load_config as load_yaml_config
from wire.payloads import VehicleClass
from wire.topics import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Norm = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Norm, Norm]

#: COCO class names -> gate classes; everything else (people, clocks, trains...) is dropped.
DEFAULT_CLASS_MAP: dict[str, VehicleClass] = {
    "car": VehicleClass.CAR,
    "truck": VehicleClass.TRUCK,
    "bus": VehicleClass.BUS,
    "motorcycle": VehicleClass.MOTORBIKE,
}


class SourceConfig(_Strict):
    """Where frames come from. Exactly one kind per unit camera."""

    kind: Literal["file", "rtsp", "usb", "picamera"] = Field(
        "file", title="Source kind", description="file (replay), rtsp/http stream, usb index, or picamera2"
    )
    path: str | None = Field(None, title="File path or stream URL", description="for file and rtsp")
    index: int = Field(0, ge=0, title="USB device index", description="for usb")
    realtime: bool = Field(
        False, title="Replay at recorded speed", description="file only: pace frames by their timestamps"
    )
    start_time: AwareDatetime | None = Field(
        None,
        title="Replay start time",
        description="file only: wall-clock time of the first frame; default: when the replay starts, "
        "floored to the window. Fix it to make replays reproducible",
    )
    reconnect_initial_s: float = Field(1.0, gt=0, title="First reconnect delay", description="live sources")
    reconnect_max_s: float = Field(30.0, gt=0, title="Longest reconnect delay", description="backoff cap")
    open_timeout_s: float = Field(
        10.0, gt=0, title="Open timeout", description="how long a first open may take"
    )
    width: int | None = Field(None, gt=0, title="Capture width", description="usb/picamera only")
    height: int | None = Field(None, gt=0, title="Capture height", description="usb/picamera only")

    @model_validator(mode="after")
    def _needs_path(self) -> SourceConfig:
        if self.kind in ("file", "rtsp") and not self.path:
            raise ValueError(f"source.path is required for kind {self.kind!r}")
        return self


class LineConfig(_Strict):
    """A counting line in normalised image coordinates; `a` -> `b` orientation names the sides."""

    a: Point = Field(title="Line start", description="(x, y), 0..1, origin top-left")
    b: Point = Field(title="Line end", description="(x, y), 0..1")
    band: float = Field(
        0.015,
        ge=0.0,
        le=0.3,
        title="Tolerance band",
        description="half-width of the dead band around the line, as a share of the frame diagonal; a count "
        "needs a full traverse from one side of the band to the other",
    )

    @model_validator(mode="after")
    def _not_degenerate(self) -> LineConfig:
        if self.a == self.b:
            raise ValueError("line a and b must differ")
        return self


class ClassPolicy(_Strict):
    """What a vehicle on this lane may be, so a nano COCO model's guesses fit the gate.

    At a border gate most vehicles are trucks, and COCO models call container trucks and semis
    "bus" (and far box trucks "car"). A lane's policy turns the model's classes into the ones that
    really use the lane before the class vote, so a semi scored half "bus", half "truck" is one
    solid truck rather than a coin toss between two wrong answers.
    """

    relabel: dict[VehicleClass, VehicleClass] = Field(
        default_factory=dict,
        title="Relabel classes",
        description="model class -> class counted on this lane, e.g. {bus: truck} on a freight lane where "
        "buses are not allowed; applied to every detection's vote before the class is decided",
    )
    long_box_ratio: float | None = Field(
        None,
        gt=1.0,
        le=10.0,
        title="Long-box truck ratio",
        description="a box at least this many times longer along the direction of travel (across the line) "
        "than across it votes 'truck' whatever the model called it; depends on the camera's view, so "
        "measure it on the lane's own footage; omit to trust the model",
    )

    def vote_class(self, model_class: VehicleClass, along: float, across: float) -> VehicleClass:
        """The class a detection votes for on this lane: the long-box rule, then the relabel map."""
        if self.long_box_ratio is not None and across > 0 and along / across >= self.long_box_ratio:
            model_class = VehicleClass.TRUCK
        return self.relabel.get(model_class, model_class)


class LaneConfig(_Strict):
    id: Id = Field(title="Lane id", description="used in topics and InfluxDB tags")
    line: LineConfig
    directions: tuple[Id, Id] = Field(
        ("in", "out"),
        title="Direction names",
        description="(name for motion along the line's clockwise normal on screen, name for the opposite); "
        "for a line drawn left to right the first is 'moving down the image', for a line drawn top to "
        "bottom it is 'moving left'",
    )
    queue_zone: list[Point] | None = Field(
        None,
        min_length=3,
        title="Queue zone polygon",
        description="where vehicles wait before the line; omit to skip queue metrics",
    )
    stationary_px_s: float = Field(
        0.02,
        gt=0,
        title="Stationary speed",
        description="a vehicle slower than this (share of frame diagonal per second) counts as stopped",
    )
    classes: ClassPolicy = Field(
        default_factory=ClassPolicy,
        title="Class policy",
        description="which classes use this lane: relabel the model's classes (e.g. bus -> truck on a freight "
        "lane), optionally call a long box a truck",
    )


class NightConfig(_Strict):
    """Brighten dark scenes before inference (dusk, night, a cheap sensor at low light)."""

    mode: Literal["auto", "on", "off"] = Field(
        "auto",
        title="Night enhancement",
        description="auto: enhance while the picture's mean luminance is below dark_below; on: always; off: never",
    )
    dark_below: float = Field(
        55.0,
        ge=0,
        le=255,
        title="Dark threshold",
        description="mean luminance (0-255) under which auto mode enhances; daylight road scenes measure 65-120",
    )
    target_luma: float | None = Field(
        None,
        gt=0,
        lt=255,
        title="Target luminance",
        description="a gamma curve brings the mean luminance to this before CLAHE; omit for CLAHE alone "
        "(measured: the gamma also lifts the sensor noise, and CLAHE alone finds more vehicles at dusk)",
    )
    clahe_clip: float = Field(
        2.0,
        ge=0,
        le=40,
        title="CLAHE clip limit",
        description="local contrast on the luminance after the gamma; 0 for gamma only",
    )


class RegionConfig(_Strict):
    """Where the detector looks: the lanes' region at the model's input size, or the whole frame."""

    mode: Literal["lanes", "frame"] = Field(
        "frame",
        title="Detection region",
        description="lanes: only the box holding every line band and queue zone plus the margin (small far "
        "vehicles get more pixels, a wide band costs fewer pixels); frame: the whole frame. Default frame: on "
        "the overhead shared clip the scaled-up region found fewer vehicles (docs/edge-pipeline.md)",
    )
    margin: float = Field(
        0.2,
        ge=0,
        le=1,
        title="Region margin",
        description="added on each side of the lanes' box, as a share of the frame's width and height: room "
        "for the tracker to pick a vehicle up before it reaches the band",
    )
    max_share: float = Field(
        0.8,
        gt=0,
        le=1,
        title="Largest useful region",
        description="a region covering more of the frame than this is not worth cropping: the whole frame is used",
    )


class MotionGateConfig(_Strict):
    """Skip inference while nothing moves where the lanes are (edge/stages/motion.py)."""

    enabled: bool = Field(
        True,
        title="Motion gating",
        description="skip the detector while the lanes' area is unchanged since the last frame it saw; the "
        "tracker keeps that frame's boxes, so a standing queue stays a queue",
    )
    pixel_change: int = Field(
        18, ge=1, le=255, title="Pixel change", description="grey levels (0-255) a pixel must change by to count",
    )
    changed_share: float = Field(
        0.002,
        ge=0,
        le=1,
        title="Changed share",
        description="share of the lanes' area (downscaled) that must change to run the detector again",
    )
    max_skip_s: float = Field(
        2.0, gt=0, le=60, title="Longest skip", description="the detector runs at least this often regardless",
    )
    margin: float = Field(
        0.2, ge=0, le=1, title="Watched margin",
        description="the watched area is the lanes' box plus this share of the frame on each side",
    )


ModelFormat = Literal["auto", "pt", "onnx", "onnx-int8", "ncnn"]


class ModelConfig(_Strict):
    path: Path = Field(
        Path("../shared/models/yolov8n.pt"),
        title="Model path",
        description="any format ultralytics loads: .pt, .onnx, .tflite, NCNN folder; never a bare name",
    )
    format: ModelFormat = Field(
        "auto",
        title="Runtime format",
        description="how a .pt model runs: onnx (ONNX Runtime) or ncnn (NCNN), exported once and cached, "
        "without torch; pt (ultralytics, torch); auto: the fastest that counts exactly (onnx on x86, ncnn "
        "on Arm); onnx-int8: ONNX Runtime with int8 convolutions, calibrated on model.calibration. A path "
        "that is already an export runs in its own format",
    )
    calibration: Path | None = Field(
        None,
        title="int8 calibration footage",
        description="a clip, or a folder of clips and images, from this unit's camera: its frames fix the "
        "activation ranges of format onnx-int8 (day and night footage both, if the lane runs at night)",
    )
    imgsz: int = Field(480, ge=64, le=1920, multiple_of=32, title="Inference image size")
    conf: float = Field(
        0.05, gt=0, lt=1, title="Confidence threshold",
        description="weak boxes only extend existing tracks (the tracker's new_track_thresh starts them)",
    )
    iou: float = Field(0.7, gt=0, lt=1, title="NMS IoU threshold")
    vehicle_head: bool = Field(
        True,
        title="Vehicle-only head",
        description="cut a .pt model's class head to the mapped classes, so a vehicle's best class is "
        "chosen among vehicles only (top-down cars otherwise score as 'airplane' and are lost)",
    )
    tracker: str = Field(
        "gate_rf_bytetrack.yaml", title="Tracker config",
        description="tracker settings yaml: a file in edge/stages/trackers (gate_rf_bytetrack.yaml: time-based, "
        "torch-free; gate_bytetrack.yaml: ultralytics' frame-based ByteTrack), an ultralytics name, or a path",
    )
    night: NightConfig = Field(default_factory=NightConfig, title="Night enhancement")
    region: RegionConfig = Field(default_factory=RegionConfig, title="Detection region")
    vid_stride: int = Field(1, ge=1, le=10, title="Frame stride", description="process every n-th frame")
    nested_share: float | None = Field(
        0.7,
        gt=0,
        le=1,
        title="Nested-box share",
        description="a box with at least this share of its area inside a larger, more confident box is part of "
        "that vehicle (its side, a trailer) and is dropped before tracking; omit to keep every box",
    )
    duplicate_iou: float | None = Field(
        0.5,
        gt=0,
        lt=1,
        title="Duplicate-box IoU",
        description="a weaker box that holds 90 % of a more confident one and overlaps it at least this much (IoU) "
        "is a second box for the same vehicle and is dropped before tracking; omit to keep such boxes",
    )
    max_box_share: float = Field(
        0.5,
        gt=0,
        le=1,
        title="Largest plausible box",
        description="boxes covering more than this share of the frame are dropped (empty-road false positives)",
    )
    class_map: dict[str, VehicleClass] = Field(
        default_factory=lambda: dict(DEFAULT_CLASS_MAP),
        title="Class map",
        description="model class name -> gate class; unmapped classes are dropped",
    )
    motion_gate: MotionGateConfig = Field(default_factory=MotionGateConfig, title="Motion gating")

    @field_validator("path")
    @classmethod
    def _real_path(cls, v: Path) -> Path:
        if len(v.parts) == 1 and v.suffix in {".pt", ".onnx", ".tflite"}:
            raise ValueError(f"{v} is a bare name; give a real path (ultralytics would try to download it)")
        return v


class CountingConfig(_Strict):
    window_s: float = Field(
        10.0, gt=0, le=3600, title="Window length", description="aligned to the wall clock"
    )
    track_ttl_s: float = Field(
        3.0, gt=0, title="Track expiry", description="forget a track not seen for this long (bounds memory)"
    )
    id_switch_guard_s: float = Field(
        1.5,
        ge=0,
        title="Id-switch guard",
        description="a new track appearing just past the line this soon after another crossed there "
        "is taken to be the same vehicle",
    )
    class_settle_s: float = Field(
        1.0, ge=0, le=5, title="Class settle time",
        description="a crossing's class is the track's majority class this long after it crossed",
    )
    id_switch_guard_dist: float = Field(0.06, ge=0, le=1, title="Id-switch guard distance")
    min_track_s: float = Field(
        0.4, ge=0, le=5, title="Shortest counted track",
        description="a crossing counts only if its track was seen over at least this many seconds by the time "
        "its class settles; shorter tracks are ghost boxes (compression blocks, a vehicle's shadow)",
    )
    min_seen_share: float = Field(
        0.25, ge=0, le=1, title="Least seen share",
        description="a crossing counts only if its track was detected in at least this share of the processed "
        "frames between its first and latest detection; a ghost flickers in and out and the tracker carries it "
        "across the line on its prediction",
    )
    born_across: bool = Field(
        True, title="Count vehicles first seen across the line",
        description="a track whose first box already lies across the line (its reference point past the band, "
        "its other end still before the line) counts once it moves a band-width further away: a weakly "
        "seen vehicle (night, monochrome, heavy compression) is often first detected halfway over the line",
    )
    events: bool = Field(False, title="Publish per-crossing events")


class MqttConfig(MqttConnection):
    """The unit's broker link: the shared connection settings plus the outbox drain."""

    session_expiry_s: int = Field(
        7 * 24 * 3600, ge=0, title="Session expiry (s)",
        description="how long the broker keeps the unit's session (and its unacknowledged messages)",
    )
    reconnect_min_s: float = Field(
        1.0, gt=0, title="First reconnect delay (s)", description="doubles per failed attempt"
    )
    reconnect_max_s: float = Field(60.0, gt=0, title="Longest reconnect delay (s)", description="backoff cap")
    drain_rate_per_s: float = Field(
        200.0, gt=0, title="Backlog drain rate", description="records/s after reconnect"
    )
    max_inflight: int = Field(20, ge=1, le=1000, title="Unacknowledged messages in flight")


class OutboxConfig(_Strict):
    path: Path = Field(
        Path("/var/lib/gatewatch/outbox.sqlite3"), title="Outbox file",
        description="the seq mark (<name>.seq) and the disk reserve (<name>.reserve) live beside it",
    )
    max_bytes: int = Field(
        256 * 1024 * 1024, ge=64 * 1024, title="Disk bound",
        description="stored messages, acknowledged-but-not-yet-stored ones included; oldest dropped first",
    )
    reserve_bytes: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, title="Disk headroom",
        description="free space the outbox never uses on its filesystem, plus a file of this size it gives "
        "back when the disk fills anyway, so that dropping the oldest rows always has room to run",
    )
    resend_after_s: float = Field(
        120.0, gt=0, le=86_400, title="Re-send after (s)",
        description="a message the broker acknowledged but the server has not confirmed stored after this "
        "long is published again: a broker that crashes loses what it acknowledged since its last save",
    )
    ledger_s: float = Field(
        900.0, ge=0, le=7 * 86_400, title="Window memory (s)",
        description="how far back the unit remembers the windows it emitted, so that a second piece of one "
        "window (a restart inside it, the clock stepping back) is merged into one record, not sent as a clash",
    )


class HealthConfig(_Strict):
    interval_s: float = Field(30.0, gt=0, le=3600, title="Health interval")


class LaneSignalConfig(_Strict):
    lane: Id
    red: int = Field(ge=0, le=40, title="Red LED pin (BCM)")
    amber: int = Field(ge=0, le=40, title="Amber LED pin (BCM)")
    green: int = Field(ge=0, le=40, title="Green LED pin (BCM)")


class LoopSensorConfig(_Strict):
    lane: Id
    pin: int = Field(ge=0, le=40, title="Sensor input pin (BCM)")
    pull_up: bool = Field(False, title="Enable pull-up")
    bounce_s: float = Field(0.05, ge=0, le=2, title="Debounce time")


class GpioConfig(_Strict):
    status_led: int | None = Field(None, ge=0, le=40, title="Unit status LED pin (BCM)")
    lane_signals: list[LaneSignalConfig] = Field(default_factory=list, title="Lane signal lights")
    loop_sensors: list[LoopSensorConfig] = Field(default_factory=list, title="Loop / beam-break sensors")
    alert_stale_s: float = Field(90.0, gt=0, title="Alert staleness", description="beyond this, show unknown")


class HomeAssistantConfig(_Strict):
    """Home Assistant MQTT discovery (edge/service/discovery.py, docs/operator-guide.md).

    Off by default: discovery configs create entities in every Home Assistant that listens on the
    broker, and the broker must grant the unit its discovery topics (provisioning does, for a unit
    whose unit.yaml turns this on). A gate that runs Home Assistant turns it on per unit.
    """

    enabled: bool = Field(False, title="Publish discovery", description="announce this unit's lanes to Home Assistant")
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[a-zA-Z0-9_-]+$", title="Discovery prefix",
        description="Home Assistant's mqtt discovery_prefix",
    )
    status_topic: str = Field(
        "homeassistant/status", min_length=1, title="Birth topic",
        description="where Home Assistant announces `online` (its birth message); the configs are sent again then",
    )


class UnitMetricsConfig(MetricsConfig):
    port: int = Field(9731, ge=1, le=65535, title="Listen port", description="TCP port of the unit's /metrics")


class UnitConfig(_Strict):
    gate: Id = Field(title="Gate id", description="e.g. huu-nghi")
    unit: Id = Field(title="Unit id", description="unique within the gate")
    source: SourceConfig
    lanes: list[LaneConfig] = Field(min_length=1, title="Lanes")
    model: ModelConfig = Field(default_factory=ModelConfig)
    counting: CountingConfig = Field(default_factory=CountingConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, title="Home Assistant", description="MQTT discovery of lanes"
    )
    metrics: UnitMetricsConfig = Field(
        default_factory=UnitMetricsConfig, title="Prometheus metrics", description="/metrics of the unit"
    )

    @model_validator(mode="after")
    def _unique_lanes(self) -> UnitConfig:
        ids = [lane.id for lane in self.lanes]
        if len(ids) != len(set(ids)):
            raise ValueError(f"lane ids must be unique, got {ids}")
        refs = [s.lane for s in self.gpio.lane_signals] + [s.lane for s in self.gpio.loop_sensors]
        for ref in refs:
            if ref not in ids:
                raise ValueError(f"gpio refers to unknown lane {ref!r}")
        return self

    def config_hash(self) -> str:
        """Short hash published in `status`, so operators can tell which config a unit runs."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def load_config(path: Path | str, base_dir: Path | None = None) -> UnitConfig:
    """Read and validate a unit config; relative paths in it resolve against the file's folder."""
    path = Path(path)
    return resolve_paths(load_yaml_config(UnitConfig, path), base_dir or path.parent)


def resolve_paths(cfg: UnitConfig, base: Path) -> UnitConfig:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    src = cfg.source
    if src.kind == "file" and src.path and not Path(src.path).is_absolute():
        src = src.model_copy(update={"path": str(fix(Path(src.path)))})
    model = cfg.model
    env_model = os.environ.get("GATEWATCH_MODEL")
    model_path = Path(env_model) if env_model else fix(model.path)
    return cfg.model_copy(update={"source": src, "model": model.model_copy(update={"path": model_path})})
