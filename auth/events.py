"""The events auth publishes (``docs/messaging.md``, *Who publishes what*).

``auth.UserRegistered`` carries the new account's id (the tokens' ``sub``) and its role,
never the e-mail address: a consumer that needs it asks auth. The envelope is written to
auth's outbox (:data:`auth.store.outbox`) in the transaction that creates the user.
"""

from __future__ import annotations

from charter.messaging.envelope import Envelope
from charter.observability.logs import correlation_id

SOURCE = "auth"
USER_REGISTERED = "UserRegistered"


def user_registered(user_id: str, role: str) -> Envelope:
    """``auth.UserRegistered`` for a new account (``user_id`` is the token ``sub``)."""
    return Envelope.new(USER_REGISTERED, {"user_id": user_id, "role": role}, source=SOURCE,
                        correlation_id=correlation_id.get())
