"""What edge and server share, beside the wire contract: the exception root and exit codes
(`errors`), the one CLI error guard (`cli`), the config style (`config`: strict base, YAML loader,
secrets named by environment variable, the MQTT connection settings) and the one paho client
factory (`mqtt`).

It imports nothing from `edge`, `server` or `gatewatch`, so each of them, and `wire`, can build
on it while `edge` and `server` still never import each other.
"""
