"""The embedded default: one .eml file per recipient under outbox/<send>/, no account needed.

Each delivery has one stable file name and is written atomically, so sending
a delivery again rewrites the same file: nobody can get two copies.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from ..atomic import write_atomic
from ..config import Settings
from ..addressing import needs_smtputf8
from ..messages import HEADER_POLICY, Issue, Recipient, build_message
from ..store.schema import DeliveryStatus
from . import Outcomes

UTF8_POLICY = HEADER_POLICY.clone(utf8=True)


class OutboxProvider:
    name = "outbox"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.folder = settings.outbox_path

    def path_for(self, issue: Issue, recipient: Recipient) -> Path:
        if issue.send_id is None or recipient.delivery_id is None:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
            safe = re.sub(r"[^A-Za-z0-9@._-]", "_", recipient.email)
            return self.folder / "test" / f"{stamp}-{safe}.eml"
        return self.folder / f"send-{issue.send_id}" / f"{recipient.delivery_id:08d}.eml"

    def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]:
        for recipient in recipients:
            if not outcomes.may_send():
                return {}
            try:
                message = build_message(self.settings, issue, recipient)
                data = message.as_bytes(policy=UTF8_POLICY) if needs_smtputf8(recipient.email) else message.as_bytes()
            except Exception as exc:  # noqa: BLE001 - one recipient's message must not stop the others
                outcomes.settle(recipient, DeliveryStatus.FAILED, f"the message could not be built: {type(exc).__name__}: {exc}")
                continue
            write_atomic(self.path_for(issue, recipient), data, durable=True)
            outcomes.settle(recipient, DeliveryStatus.SENT)
        return {}
