"""Standard Webhooks signatures (https://www.standardwebhooks.com), made with the `standardwebhooks` library.

Receivers verify with that library, the `openai` SDK's `client.webhooks.unwrap`, or by hand:
`v1,` + base64(HMAC-SHA256(secret, f"{webhook-id}.{webhook-timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret, `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """Enough of a secret to tell two apart, not enough to sign with."""
    return f"{secret[: len(SECRET_PREFIX) + 4]}…{secret[-4:]}"


def sign_headers(
    secrets_: Iterable[str], *, message_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret (several while a rotation overlaps)."""
    signatures = " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body) for secret in secrets_
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }
