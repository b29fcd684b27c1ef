"""The long-running unit service on the Pi, around the pipeline:

runtime (threads, wiring, watchdog) -> outbox (durable, per-unit seq) -> publisher (MQTT),
with health, GPIO lane signals and loop sensors on the side, and `cli` for `gatewatch edge`.
"""
