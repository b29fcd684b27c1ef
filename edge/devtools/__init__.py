"""Developer and installer tools: replay, accuracy evaluation, benchmarks, model export,
calibration pictures and annotated video. A unit in service never imports this package
(except `export`, which the Pi installer runs once)."""
