"""The embedded default: one .eml file per recipient under outbox/<send>/, no account needed.

Each delivery has one stable file name and is written whole or not at all
(outbox_folder.py), so sending a delivery again rewrites the same file: nobody
can get two copies, and a kill leaves no half-written file behind.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from ..config import Settings
from ..addressing import needs_smtputf8
from ..messages import Issue, Recipient, personal_copy
from ..store.schema import DeliveryStatus
from . import Outcomes
from .outbox_folder import OutboxFolder


class OutboxProvider:
    name = "outbox"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.folder = settings.outbox_path
        self.files = OutboxFolder(self.folder)

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
                data = personal_copy(self.settings, issue, recipient, utf8=needs_smtputf8(recipient.email))
            except Exception as exc:  # noqa: BLE001 - one recipient's message must not stop the others
                outcomes.settle(recipient, DeliveryStatus.FAILED, f"the message could not be built: {type(exc).__name__}: {exc}")
                continue
            self.files.write(self.path_for(issue, recipient), data)
            outcomes.settle(recipient, DeliveryStatus.SENT)
        return {}
