"""Secrets from files (systemd LoadCredential), never from the YAML in clear."""

from __future__ import annotations

import os
from pathlib import Path


class SecretError(RuntimeError):
    pass


def read_secret(path: str | Path) -> str:
    """The file's content without the trailing newline.

    A relative path is looked up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`)
    when that is set, so a unit file can say `password_file: mqtt-password`.
    """
    p = Path(path)
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not p.is_absolute() and creds:
        p = Path(creds) / p
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"cannot read secret file {p}: {exc.strerror or exc}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise SecretError(f"secret file {p} is empty")
    return value
