"""The counting pipeline's stages, in the order a frame meets them:

capture (frame sources) -> detector (the only ultralytics import; tracked boxes) -> detections
(the one data type between stages) -> geometry and counting (line crossings per lane) -> queues
(queue zone, waits, clearance) -> windows (per-lane records over wall-clock windows).

`edge.pipeline` wires them together; each stage is pure enough to test with synthetic input.
"""
