"""Who may command the line over MQTT, and as whom the audit trail names them.

MQTT does not tell a subscriber who published a message, and anything inside the
message (`"by"`, a user property) is whatever the publisher chose to write. The one
identity the appliance can trust is the one the broker authenticated, and it reaches
the appliance only through the topic: commands are published on
`<base>/cmd/<identity>/<command>`, and the broker's ACL lets each client write only
under its own name (Mosquitto: `pattern write <base>/cmd/%u/#`; with TLS client
certificates, `use_identity_as_username true` makes `%u` the certificate's CN).

Whether that holds is decided by how the appliance itself connects: with credentials
(a username or a client certificate) the broker authenticates, and `allow` lists which
identity may send which command, everything else refused. Without credentials the
broker is anonymous, the topic's identity is only a claim, and only the commands in
`anonymous` are accepted (recorded as `mqtt:anonymous`), with a warning at start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

#: the commands MES may send (their models are in `edge.publish.commands`)
CommandName = Literal["start_batch", "stop_batch", "change_recipe"]
COMMAND_NAMES: tuple[str, ...] = ("start_batch", "stop_batch", "change_recipe")

#: an identity as it can stand in one topic level (no wildcards, no separators)
_IDENTITY = re.compile(r"^[^/+#\x00-\x1f]{1,64}$")


def _identity(v: str) -> str:
    if not _IDENTITY.match(v):
        raise ValueError(
            f"identity {v!r} cannot be one MQTT topic level (1 to 64 characters, no '/', '+', '#')"
        )
    return v


Identity = Annotated[str, AfterValidator(_identity)]


class CommandsConfig(BaseModel):
    """`mqtt.commands`: which identities may send which commands."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="subscribe to MES commands at all")
    allow: dict[Identity, list[CommandName]] = Field(
        default_factory=dict,
        description="broker-authenticated identity -> the commands it may send; "
        "everything else is refused",
    )
    anonymous: list[CommandName] = Field(
        default_factory=list,
        description="commands accepted when the appliance connects without credentials "
        "(nobody is authenticated; recorded as mqtt:anonymous); none by default",
    )
    refusals_audited: int = Field(
        20, ge=0, description="refusals audited one by one per interval; the rest are counted"
    )
    refusal_interval_s: float = Field(
        60.0, gt=0, description="interval of the refusal summary row in the audit trail"
    )
    check_broker: bool = Field(
        True,
        description="after connecting with credentials, check once that the broker refuses an "
        "unknown user and a command published under another identity (edge.publish.broker_check)",
    )


@dataclass(frozen=True)
class Sender:
    """Who sent a command, as far as the appliance can know.

    `identity` is the topic's identity level; it is authenticated only when the broker
    is (`authenticated`). `user_property` (MQTT 5 user property `user`) and the
    payload's `by` are claims, kept apart and never used as the audit user.
    """

    identity: str | None
    authenticated: bool
    user_property: str | None = None

    @property
    def audit_user(self) -> str:
        if self.authenticated and self.identity:
            return f"mqtt:{self.identity}"
        return "mqtt:anonymous"

    def claims(self, by: str | None = None) -> dict[str, str]:
        """What the sender said about itself that the broker did not vouch for."""
        out: dict[str, str] = {}
        if self.identity and not self.authenticated:
            out["claimed_identity"] = self.identity
        if self.user_property:
            out["claimed_user"] = self.user_property
        if by:
            out["claimed_by"] = by
        return out


class Refused(Exception):
    """A command the policy does not let through: a code and a message for the answer."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def has_credentials(mqtt_cfg: Any) -> bool:
    """The appliance connects with a username or a client certificate: the broker authenticates."""
    tls = getattr(mqtt_cfg, "tls", None)
    return bool(mqtt_cfg.username) or bool(tls is not None and tls.cert_file)


class CommandPolicy:
    def __init__(
        self,
        cfg: CommandsConfig,
        authenticated: bool,
        distrust: Callable[[], str | None] = lambda: None,
    ):
        """`distrust()`: why the broker's identities cannot be trusted now (a failed check)."""
        self.cfg = cfg
        self.authenticated = authenticated
        self.distrust = distrust

    @property
    def trusted(self) -> bool:
        """The topic's identity is the one the broker authenticated."""
        return self.authenticated and self.distrust() is None

    def check(self, sender: Sender, name: str) -> None:
        """Raise `Refused` unless `sender` may send command `name`."""
        if not sender.identity:
            raise Refused(
                "no_identity",
                "commands are published on <prefix>/cmd/<identity>/<command>; "
                "the identity level is missing",
            )
        why = None if self.authenticated else "the appliance connects without credentials"
        why = why or self.distrust()
        if why or not sender.authenticated:
            if name not in self.cfg.anonymous:
                raise Refused(
                    "not_authorised",
                    f"no sender is authenticated ({why or 'unknown'}); "
                    f"{name} is not in mqtt.commands.anonymous",
                )
            return
        if name not in self.cfg.allow.get(sender.identity, ()):
            raise Refused(
                "not_authorised",
                f"identity {sender.identity!r} may not send {name} (mqtt.commands.allow)",
            )

    def warn_at_start(self) -> None:
        """Say at start what the configuration means for who can command the line."""
        if not self.cfg.enabled:
            log.info("MQTT commands are disabled (mqtt.commands.enabled: false)")
            return
        if self.authenticated:
            if not self.cfg.allow:
                log.warning("MQTT commands: no identity is allowed (mqtt.commands.allow is empty)")
            return
        if self.cfg.anonymous:
            log.warning(
                "MQTT commands %s are accepted from ANYONE who can reach the broker: the "
                "appliance connects without credentials, so no sender is authenticated "
                "(recorded as mqtt:anonymous)",
                ", ".join(self.cfg.anonymous),
            )
        else:
            log.warning(
                "MQTT commands are refused: the appliance connects to the broker without "
                "credentials, so no sender can be authenticated (set mqtt.username or a "
                "TLS client certificate, and mqtt.commands.allow)"
            )
        if self.cfg.allow:
            log.warning("mqtt.commands.allow is not used on a broker without authentication")
