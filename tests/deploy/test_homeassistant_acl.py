"""Home Assistant discovery through the shipped broker config and provisioned ACLs: a unit with
discovery on may announce, read and delete its own entities and lane states only; a unit without it
may touch none. Each refusal has its positive control in the same test."""

from __future__ import annotations

import signal

from gatewatch.provision import UnitOptions, provision_unit
from tests.deploy.conftest import SecureBroker
from tests.fixtures.procs import wait_for
from wire.homeassistant import node_id

# gate `ha_x` unit `cam1` and gate `ha` unit `x_cam1` would share the naive node `ha_x_cam1`
UNIT_A = ("ha_x", "cam1")
UNIT_B = ("ha", "x_cam1")


def _reload(secure_broker: SecureBroker) -> None:
    """SIGHUP: mosquitto re-reads its password and ACL files; done once the new account logs in."""
    proc = secure_broker.broker.process.proc
    assert proc is not None
    proc.send_signal(signal.SIGHUP)

    def new_account_works() -> bool:
        probe = secure_broker.unit(*UNIT_A, client_id="reload-check")
        try:
            return probe.connect(timeout=2).ok
        finally:
            probe.close()

    wait_for(new_account_works, 10, "the broker to load the new accounts")


def _config(gate: str, unit: str, obj: str = "queue-l1") -> str:
    return f"homeassistant/sensor/{node_id(gate, unit)}/{obj}/config"


def test_a_unit_speaks_only_for_its_own_node(secure_broker: SecureBroker) -> None:
    for gate, unit in (UNIT_A, UNIT_B):
        provision_unit(secure_broker.state.root, gate, unit,
                       UnitOptions(broker_host="broker.gate.test", home_assistant=True))
    acl = secure_broker.state.acl.read_text()
    assert f"topic readwrite homeassistant/+/{node_id(*UNIT_A)}/+/config" in acl
    _reload(secure_broker)
    a = secure_broker.unit(*UNIT_A, client_id="a")
    b = secure_broker.unit(*UNIT_B, client_id="b")
    plain = secure_broker.unit("huu-nghi", "cam1")  # provisioned without discovery
    try:
        for probe in (a, b, plain):
            assert probe.connect().ok
        # its own: announce, lane state, and read back what it left there (retained)
        assert not a.publish(_config(*UNIT_A), b"a-config", retain=True).is_failure
        assert not a.publish("gatewatch/v1/ha_x/cam1/lane/l1", b"a-state", retain=True).is_failure
        assert not b.publish(_config(*UNIT_B), b"b-config", retain=True).is_failure  # b's own, the control
        # anyone else's: refused, including the unit whose naive node id would be the same
        for topic in (_config(*UNIT_B), "gatewatch/v1/ha/x_cam1/lane/l1", "homeassistant/status",
                      "homeassistant/sensor/ha_x_cam1/queue-l1/config"):
            rc = a.publish(topic, b"forged", retain=True)
            assert rc.is_failure and "not authori" in str(rc).lower(), (topic, str(rc))
        # reading: its own node and lane states, never another's (mosquitto filters what it delivers)
        for pattern in (f"homeassistant/+/{node_id(*UNIT_A)}/+/config", f"homeassistant/+/{node_id(*UNIT_B)}/+/config",
                        "gatewatch/v1/ha_x/cam1/lane/+", "gatewatch/v1/ha/x_cam1/lane/+"):
            a.subscribe(pattern)
        wait_for(lambda: len(a.retained) >= 2, 5, "a's own retained messages")
        assert sorted(a.retained) == [("gatewatch/v1/ha_x/cam1/lane/l1", b"a-state"), (_config(*UNIT_A), b"a-config")]
        # and deleting: its own entity goes, another's stays
        assert not a.publish(_config(*UNIT_A), b"", retain=True).is_failure
        assert a.publish(_config(*UNIT_B), b"", retain=True).is_failure
        # a unit without discovery on has no discovery topics at all
        assert plain.publish(_config("huu-nghi", "cam1"), b"{}").is_failure
        assert not plain.publish("gatewatch/v1/huu-nghi/cam1/health", b"own").is_failure
    finally:
        b.publish(_config(*UNIT_B), b"", retain=True)  # leave no retained state to other tests
        a.publish("gatewatch/v1/ha_x/cam1/lane/l1", b"", retain=True)
        for probe in (a, b, plain):
            probe.close()
