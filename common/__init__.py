"""What every gatewatch package shares, beside the wire contract: the exception root and the
command-line error convention (and, later, the config base and the MQTT client factory).

It imports nothing from `edge`, `server` or `gatewatch`, so each of them, and `wire`, can build
on it while `edge` and `server` still never import each other.
"""
