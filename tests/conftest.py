import os
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gatewatch-yolo-"))

pytest_plugins = ["tests.fixtures.mosquitto", "tests.fixtures.influx"]

ROOT = Path(__file__).resolve().parent.parent
