"""Does the broker really make the command topic's identity the authenticated one? Ask it.

The appliance trusts `cmd/<identity>/...` only because the broker is meant to (1) refuse
clients it cannot authenticate and (2) let each client write commands only under its own
name. Both are broker configuration, easy to get wrong, and invisible from a subscriber.
So once per process, when its own connection is first up, the appliance checks on two
short connections of its own (the line's connection is never touched):

- **the ACL**: with the appliance's credentials, it publishes (QoS 1) to
  `cmd/<a random other identity>/acl_probe`. A broker that enforces the pattern answers
  the MQTT 5 PUBACK with "Not authorized" (0x87), or drops the connection (Mosquitto 2.0
  does); a success code means anyone with an account may send commands under any name.
- **authentication**: with a random user name and password (and no client certificate),
  the connection must be refused.

A failed check, or one that could not be made, raises the alarm `MQTT_IDENTITY_UNTRUSTED`
and the appliance treats the broker as anonymous: only `mqtt.commands.anonymous` is
accepted (a check that could not connect is tried again at the next connect). Commands
that arrive before the check has answered wait for it, a few seconds at most.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)

ALARM = "MQTT_IDENTITY_UNTRUSTED"


class IdentityCheck:
    def __init__(
        self,
        cfg: Any,
        cmd_topic: Callable[[str, str], str],
        credentials: Callable[[mqtt.Client], None],
        alarms: Any,
        enabled: bool,
    ):
        """`cfg`: the mqtt config; `credentials(client)` gives a client the appliance's login."""
        self.cfg = cfg
        self.cmd_topic = cmd_topic
        self.credentials = credentials
        self.alarms = alarms
        self.enabled = enabled
        self.problems: list[str] = []
        self.notes: list[str] = []
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        if not enabled:
            self._done.set()

    # ------------------------------------------------------------------ verdict

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def running(self) -> bool:
        return self._running

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def distrust(self) -> str | None:
        """Why command identities cannot be trusted now, or None."""
        if not self.enabled:
            return None
        if not self.done:
            return "the broker check has not answered yet"
        if self.problems:
            return "; ".join(self.problems)
        return None

    def status(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "done": self.done,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }

    # ------------------------------------------------------------------

    def on_connect(self) -> None:
        """The line's connection is up: check once (again, if the last one could not connect)."""
        with self._lock:
            if not self.enabled or self._done.is_set() or self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="mqtt-broker-check", daemon=True).start()

    def _run(self) -> None:
        try:
            acl = self._probe(
                self.credentials,
                publish_to=self.cmd_topic(
                    f"edge-inspect-probe-{secrets.token_hex(6)}", "acl_probe"
                ),
            )
            stranger = self._probe(self._stranger)
        except Exception as exc:  # a bug here must not leave commands waiting forever
            log.exception("MQTT broker check failed")
            acl = stranger = f"error: {exc}"
        problems, notes = [], []
        if acl == "denied":
            notes.append("the broker refused a command published under another identity")
        elif acl == "published":
            problems.append(
                "the broker let this appliance publish a command under another identity "
                "(no `pattern write <prefix>/cmd/%u/+`, or a broader write grant)"
            )
        else:
            problems.append(f"the ACL could not be checked ({acl})")
        if stranger == "published" or stranger == "connected":
            problems.append("the broker accepted an unknown user name with a random password")
        else:
            notes.append("the broker refused an unknown user")
        self.problems, self.notes = problems, notes
        retry = any("could not be checked" in p for p in problems)
        self._report(final=not retry)  # the alarm stands before anyone sees the check done
        with self._lock:
            self._running = False
            if not retry:
                self._done.set()

    def _stranger(self, c: mqtt.Client) -> None:
        c.username_pw_set(f"edge-inspect-probe-{secrets.token_hex(6)}", secrets.token_hex(16))
        tls = self.cfg.tls
        if tls is not None:  # the same CA, no client certificate
            ca = str(tls.ca_file) if tls.ca_file else None
            c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
            c.tls_insecure_set(tls.insecure)

    def _probe(
        self, setup: Callable[[mqtt.Client], None], publish_to: str | None = None, timeout=5.0
    ) -> str:
        """One short connection: what the broker did with it.

        "refused" (at connect), "connected", "published" (PUBACK success), "denied" (PUBACK
        failure, or dropped after the publish), "no answer", or "cannot connect: ...".
        """
        outcome: list[str] = []
        done = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{self.cfg.client_id or 'edge-inspect'}-check-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        setup(c)

        def on_connect(client, _u, _f, reason_code, _p) -> None:
            if reason_code.is_failure:
                outcome.append("refused")
                done.set()
            elif publish_to is None:
                outcome.append("connected")
                done.set()
            else:
                outcome.append("connected")
                client.publish(publish_to, b"{}", qos=1)

        def on_publish(_c, _u, _mid, reason_code, _p) -> None:
            outcome.append("denied" if reason_code.is_failure else "published")
            done.set()

        def on_disconnect(*_a: Any) -> None:
            if outcome == ["connected"] and publish_to is not None:
                outcome.append("denied")  # dropped for the publish (Mosquitto 2.0 does)
            elif not outcome:
                outcome.append("refused")
            done.set()

        c.on_connect, c.on_publish, c.on_disconnect = on_connect, on_publish, on_disconnect
        c.on_connect_fail = lambda *_a: (outcome.append("refused"), done.set())
        try:
            c.connect(self.cfg.host, self.cfg.port, keepalive=5)
        except (OSError, ssl.SSLError) as exc:
            return "refused" if isinstance(exc, ssl.SSLError) else f"cannot connect: {exc}"
        end = time.monotonic() + timeout
        try:
            while not done.is_set() and time.monotonic() < end:
                if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS and not done.is_set():
                    on_disconnect()
        finally:
            c.disconnect()
        return outcome[-1] if outcome else "no answer"

    # ------------------------------------------------------------------

    def _report(self, final: bool) -> None:
        if self.problems:
            msg = (
                "MQTT command identities cannot be trusted: "
                + "; ".join(self.problems)
                + ". Commands are refused except mqtt.commands.anonymous (docs/deployment.md)"
            )
            log.error(msg)
            self.alarms.raise_(ALARM, msg, "minor", False)
        elif final:
            log.info("MQTT broker check passed: %s", "; ".join(self.notes))
            if self.alarms.is_active(ALARM):
                self.alarms.clear(ALARM)
