"""The shipped broker config and provisioned ACLs, attacked through a real mosquitto.

Every "refused" check has a positive control in the same test (the same client, or the same
listener, doing the allowed thing successfully), so a broken fixture cannot pass as security.
"""

from __future__ import annotations

import queue

import pytest

from gatewatch.provision import State, UnitOptions, provision_unit
from tests.deploy.conftest import SecureBroker
from tests.fixtures.procs import wait_for

P = "gatewatch/v1"


def _connected(probe_connect: object) -> None:
    assert getattr(probe_connect, "ok", False), f"expected to connect: {probe_connect}"


def test_provisioned_unit_and_server_connect_over_tls(secure_broker: SecureBroker) -> None:
    unit = secure_broker.unit("huu-nghi", "cam1")
    server = secure_broker.server()
    try:
        _connected(unit.connect())
        _connected(server.connect())
    finally:
        unit.close()
        server.close()


@pytest.mark.parametrize("listener", ["unit", "server"])
def test_anonymous_refused(secure_broker: SecureBroker, listener: str) -> None:
    """TLS and (on the unit listener) a valid client certificate, but no username: refused."""
    probe = (secure_broker.unit("huu-nghi", "cam1", username=None, password=None) if listener == "unit"
             else secure_broker.server(username=None, password=None))
    try:
        result = probe.connect()
        assert not result.ok, result
        assert "not authori" in result.detail.lower() or "bad user" in result.detail.lower(), result
    finally:
        probe.close()


@pytest.mark.parametrize("listener", ["unit", "server"])
def test_wrong_password_refused(secure_broker: SecureBroker, listener: str) -> None:
    good = secure_broker.unit("huu-nghi", "cam1") if listener == "unit" else secure_broker.server()
    bad = (secure_broker.unit("huu-nghi", "cam1", password="not-the-password") if listener == "unit"
           else secure_broker.server(password="not-the-password"))
    try:
        _connected(good.connect())
        result = bad.connect()
        assert not result.ok, result
        assert "bad user" in result.detail.lower() or "not authori" in result.detail.lower(), result
    finally:
        good.close()
        bad.close()


def test_other_units_password_refused(secure_broker: SecureBroker) -> None:
    """Passwords are per account: cam2's password does not open cam1's account."""
    cam2_password = secure_broker.unit("huu-nghi", "cam2").password
    probe = secure_broker.unit("huu-nghi", "cam1", password=cam2_password)
    try:
        assert not probe.connect().ok
    finally:
        probe.close()


@pytest.mark.parametrize("listener", ["unit", "server"])
def test_plaintext_refused(secure_broker: SecureBroker, listener: str) -> None:
    """Right credentials, no TLS: the broker has no plaintext listener, so no CONNACK ever comes."""
    probe = (secure_broker.unit("huu-nghi", "cam1", ca=None, cert=None, key=None) if listener == "unit"
             else secure_broker.server(ca=None))
    mark = secure_broker.log_mark()
    try:
        result = probe.connect(timeout=5)
        assert not result.ok, result
        secure_broker.wait_log(mark, "wrong version number")  # plaintext hit a TLS listener
    finally:
        probe.close()


def test_unit_listener_requires_client_certificate(secure_broker: SecureBroker) -> None:
    probe = secure_broker.unit("huu-nghi", "cam1", cert=None, key=None)
    mark = secure_broker.log_mark()
    try:
        result = probe.connect(timeout=5)
        assert not result.ok, result
        secure_broker.wait_log(mark, "peer did not return a certificate")
    finally:
        probe.close()


def test_certificate_from_another_ca_refused(secure_broker: SecureBroker, tmp_path) -> None:
    """A certificate made by someone else's CA (here: a second, independent provisioning) fails."""
    rogue = State(tmp_path / "rogue")
    provision_unit(rogue.root, "huu-nghi", "cam1", UnitOptions(broker_host="x"))
    rogue_tls = rogue.unit_dir("huu-nghi", "cam1") / "tls"
    probe = secure_broker.unit("huu-nghi", "cam1", cert=rogue_tls / "client.crt", key=rogue_tls / "client.key")
    mark = secure_broker.log_mark()
    try:
        result = probe.connect(timeout=5)
        assert not result.ok, result
        secure_broker.wait_log(mark, "certificate verify failed")
    finally:
        probe.close()


def test_server_certificate_verified_by_provisioned_ca(secure_broker: SecureBroker, tmp_path) -> None:
    """A client trusting a different CA refuses the broker: units cannot be lured to a fake broker."""
    rogue = State(tmp_path / "rogue")
    provision_unit(rogue.root, "huu-nghi", "cam1", UnitOptions(broker_host="x"))
    probe = secure_broker.unit("huu-nghi", "cam1", ca=rogue.ca_crt)
    try:
        result = probe.connect(timeout=5)
        assert not result.ok and "certificate verify failed" in result.detail.lower(), result
    finally:
        probe.close()


def test_unit_cannot_publish_outside_its_topics(secure_broker: SecureBroker) -> None:
    """Forged counts for another unit or gate, forged alerts and dead letters never reach the server."""
    server = secure_broker.server()
    unit = secure_broker.unit("huu-nghi", "cam1")
    try:
        _connected(server.connect())
        assert not server.subscribe(f"{P}/#")[0].is_failure
        _connected(unit.connect())
        forged = [
            f"{P}/tan-thanh/cam1/counts",  # another gate
            f"{P}/huu-nghi/cam2/counts",  # another unit of the same gate
            f"{P}/huu-nghi/lane1/alert",  # an alert (only the server raises them)
            f"{P}/huu-nghi/cam1/alert",  # an alert through the unit's own prefix
            f"{P}/huu-nghi/cam1/extra",  # not a unit topic kind
            f"{P}/huu-nghi/cam1/stored",  # its own acknowledgement: it would forget unstored records
            f"{P}/huu-nghi/cam2/stored",
            f"{P}/_deadletter",
            f"{P}/_server/health",
            f"{P}/_server/session/gatewatch-server",  # the server's claim on its client id
        ]
        refused = {topic: unit.publish(topic, b"forged") for topic in forged}
        for topic, rc in refused.items():
            assert rc.is_failure and "not authori" in str(rc).lower(), (topic, str(rc))
        allowed = {topic: unit.publish(f"{P}/huu-nghi/cam1/{topic}", b"own-" + topic.encode())
                   for topic in ("counts", "events", "status", "health")}
        assert not any(rc.is_failure for rc in allowed.values()), allowed
        unit.publish(f"{P}/huu-nghi/cam1/counts", b"marker")
        got = server.received_until(b"marker")
        assert sorted(t for t, _ in got) == sorted(
            [f"{P}/huu-nghi/cam1/{k}" for k in ("counts", "events", "status", "health", "counts")]
        ), got
        assert all(payload != b"forged" for _, payload in got)
    finally:
        unit.close()
        server.close()


def test_unit_reads_only_its_own_gates_alerts(secure_broker: SecureBroker) -> None:
    """tan-thanh's unit subscribed to everything sees nothing of huu-nghi; huu-nghi's unit sees
    its own gate's alerts (the control) and not another unit's data."""
    server = secure_broker.server()
    hn = secure_broker.unit("huu-nghi", "cam1")
    hn2 = secure_broker.unit("huu-nghi", "cam2")
    tt = secure_broker.unit("tan-thanh", "cam1")
    try:
        for probe in (server, hn, hn2, tt):
            _connected(probe.connect())
        # a retained alert already there when the units subscribe
        assert not server.publish(f"{P}/huu-nghi/lane3/alert", b"hn-retained", retain=True).is_failure
        hn.subscribe(f"{P}/huu-nghi/+/alert")
        hn.subscribe(f"{P}/huu-nghi/cam2/#")  # a neighbour's data: not readable
        for topic in (f"{P}/#", f"{P}/huu-nghi/+/alert", "#", "$SYS/#"):
            tt.subscribe(topic)
        tt.subscribe(f"{P}/tan-thanh/+/alert")
        # data a unit must not read, acknowledged by the broker before the markers are sent
        assert not hn2.publish(f"{P}/huu-nghi/cam2/counts", b"neighbour").is_failure
        assert not server.publish(f"{P}/huu-nghi/lane1/alert", b"hn-alert").is_failure
        assert not server.publish(f"{P}/tan-thanh/lane1/alert", b"tt-marker").is_failure
        assert not server.publish(f"{P}/huu-nghi/lane2/alert", b"hn-marker").is_failure
        # tt's overlapping subscriptions (#, gatewatch/v1/#, its alerts) each deliver its own alert
        server.publish(f"{P}/tan-thanh/lane9/alert", b"tt-end")
        tt_got = tt.received_until(b"tt-end")
        assert {t for t, _ in tt_got} == {f"{P}/tan-thanh/lane1/alert", f"{P}/tan-thanh/lane9/alert"}, tt_got
        assert {p for _, p in tt_got} == {b"tt-marker", b"tt-end"}, tt_got
        hn_got = hn.received_until(b"hn-marker")
        assert [p for _, p in hn_got] == [b"hn-alert", b"hn-marker"], hn_got
        with pytest.raises(queue.Empty):
            hn.messages.get(timeout=0.3)
        assert (f"{P}/huu-nghi/lane3/alert", b"hn-retained") in hn.retained
        assert not [t for t, _ in tt.retained if not t.startswith(f"{P}/tan-thanh/")], tt.retained
    finally:
        server.publish(f"{P}/huu-nghi/lane3/alert", b"", retain=True)  # clear it for other tests
        for probe in (server, hn, hn2, tt):
            probe.close()


def test_unit_reads_only_its_own_stored_acknowledgement(secure_broker: SecureBroker) -> None:
    """The server writes each unit's retained `stored`; a unit reads its own, never a neighbour's."""
    server = secure_broker.server()
    cam1 = secure_broker.unit("huu-nghi", "cam1")
    try:
        _connected(server.connect())
        _connected(cam1.connect())
        for unit in ("cam1", "cam2"):
            assert not server.publish(f"{P}/huu-nghi/{unit}/stored", f"{unit}-stored".encode(), retain=True).is_failure
        cam1.subscribe(f"{P}/huu-nghi/cam2/stored")
        cam1.subscribe(f"{P}/huu-nghi/cam1/stored")
        # retained copies follow their SUBACKs in subscription order: once its own is here, cam2's would be
        wait_for(lambda: (f"{P}/huu-nghi/cam1/stored", b"cam1-stored") in cam1.retained, 5, "its own stored")
        assert not [t for t, _ in cam1.retained if "cam2" in t], cam1.retained
    finally:
        for unit in ("cam1", "cam2"):
            server.publish(f"{P}/huu-nghi/{unit}/stored", b"", retain=True)
        cam1.close()
        server.close()


def test_client_id_cannot_hijack_another_session(secure_broker: SecureBroker) -> None:
    """Client ids are replaced by usernames, so cam2 claiming cam1's client id does not kick cam1."""
    cam1 = secure_broker.unit("huu-nghi", "cam1")
    cam2 = secure_broker.unit("huu-nghi", "cam2", client_id="huu-nghi-cam1")
    try:
        _connected(cam1.connect())
        _connected(cam2.connect())
        # a session takeover would show as a disconnect on cam1 (paho would then reconnect it)
        assert not cam1.publish(f"{P}/huu-nghi/cam1/health", b"still-here").is_failure
        assert not cam2.publish(f"{P}/huu-nghi/cam2/health", b"me-too").is_failure
        assert cam1.disconnects == 0 and cam2.disconnects == 0
    finally:
        cam1.close()
        cam2.close()


def test_shipped_config_has_no_open_door() -> None:
    """Behaviour above is what counts; this pins the directives that make it so, because some are
    each other's backup (use_username_as_clientid alone also turns away clients with no username)."""
    from tests.deploy.mqtt_probe import SHIPPED_CONF

    text = SHIPPED_CONF.read_text()
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    directives = [(words[0], " ".join(words[1:])) for words in lines]
    assert ("allow_anonymous", "false") in directives
    assert ("per_listener_settings", "false") in directives
    listeners = [i for i, (key, _) in enumerate(directives) if key == "listener"]
    assert len(listeners) == 2
    for n, start in enumerate(listeners):
        end = listeners[n + 1] if n + 1 < len(listeners) else len(directives)
        block = dict(directives[start + 1:end])
        assert {"cafile", "certfile", "keyfile"} <= block.keys(), directives[start]  # TLS on every listener
        assert block["use_username_as_clientid"] == "true"
    assert directives[listeners[0]] == ("listener", "8883")
    assert directives[listeners[1]] == ("listener", "8884 127.0.0.1")
