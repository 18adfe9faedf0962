"""The providers' error paths, through the library: each refusal or breakage settles
the recipient it concerns (or fails the batch) with the line the editor will read."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import pytest

from newsletter.config import ConfigError, Settings
from newsletter.messages import Issue, Recipient
from newsletter.providers import Collected, DeliveryFailed, OutcomeUnknown
from newsletter.providers.sendgrid import SendGridProvider
from newsletter.providers.smtp import SmtpProvider
from newsletter.statuses import DeliveryStatus

from .sendgrid_server import API_KEY, SendGridServer
from .smtp_server import ScriptedSmtp, free_port

def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


ISSUE = Issue(slug="say-what-you-mean", subject="Say what you mean", html="<p>Hello</p>", text="Hello")


def readers(*names: str) -> list[Recipient]:
    return [Recipient(email=f"{name}@example.net", name="", unsubscribe_url=f"https://news.example.org/u/{name}")
            for name in names]


class Seen(Collected):
    """Each recipient's outcome by address, as the editor reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.by_address: dict[str, tuple[str, str]] = {}

    def settle(self, recipient: Recipient, status: DeliveryStatus, reason: str = "") -> None:
        super().settle(recipient, status, reason)
        self.by_address[recipient.email] = (str(status), reason)


# -- SMTP ----------------------------------------------------------------------

Scripted = Callable[..., tuple[ScriptedSmtp, SmtpProvider]]


@pytest.fixture
def scripted(settings: Settings) -> Iterator[Scripted]:
    """Makes a scripted SMTP server (see ScriptedSmtp) and the smtp provider pointed at it."""
    servers: list[ScriptedSmtp] = []

    def make(answers: dict[str, list[str]] | None = None, extensions: tuple[str, ...] = ("8BITMIME",)) -> tuple[ScriptedSmtp, SmtpProvider]:
        server = ScriptedSmtp(answers, extensions).start()
        servers.append(server)
        provider = SmtpProvider(dataclasses.replace(settings, smtp_url=server.url))
        provider.backoff_base = 0.01
        return server, provider

    yield make
    for server in servers:
        server.stop()


def test_an_smtp_url_that_is_not_smtp_names_the_setting(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"NEWSLETTER_SMTP_URL must look like smtp://user:password@host:587, not http://…"):
        SmtpProvider(dataclasses.replace(settings, smtp_url="http://mail.example.org"))
    with pytest.raises(ConfigError, match=r"NEWSLETTER_SMTP_URL is not a URL"):
        SmtpProvider(dataclasses.replace(settings, smtp_url="smtp://[::1"))


def test_a_refused_login_fails_the_batch_without_retrying_and_closes_the_connection(scripted: Scripted) -> None:
    server, provider = scripted({"AUTH": ["535 5.7.8 bad credentials"] * 4}, extensions=("AUTH PLAIN",))
    provider.username, provider.password = "editor", "wrong"
    with pytest.raises(DeliveryFailed, match=r"^the SMTP server refused the login \(535\)$") as failed:
        provider.send(ISSUE, readers("ada"), Collected())
    assert not failed.value.retryable and server.connections == 1
    # The connection is closed by us, not left for the garbage collector (`failed` still holds its frames).
    assert wait_for(lambda: server.ended == 1), "the refused connection was left open"


def test_a_refusal_at_mail_or_data_fails_that_recipient_and_the_next_goes_on(scripted: Scripted) -> None:
    server, provider = scripted({"MAIL": ["550 5.7.1 sender not allowed"], "DATA": ["250 OK", "554 5.7.1 rejected as spam"]})
    outcomes = Seen()
    provider.send(ISSUE, readers("ada", "bob", "cath"), outcomes)
    assert outcomes.by_address == {
        "ada@example.net": ("failed", "MAIL FROM refused: 550 5.7.1 sender not allowed"),
        "bob@example.net": ("sent", ""),
        "cath@example.net": ("failed", "message refused: 554 5.7.1 rejected as spam"),
    }
    assert server.connections == 1


def test_a_server_closing_with_421_defers_and_the_rest_go_over_a_new_connection(scripted: Scripted) -> None:
    server, provider = scripted({"RCPT": ["421 4.3.2 shutting down"]})
    outcomes = Seen()
    provider.send(ISSUE, readers("ada", "bob"), outcomes)
    assert outcomes.by_address == {"ada@example.net": ("deferred", "RCPT TO refused: 421 4.3.2 shutting down"),
                                 "bob@example.net": ("sent", "")}
    assert server.connections == 2


def test_a_refused_data_command_fails_that_recipient_before_the_message(scripted: Scripted) -> None:
    _, provider = scripted({"DATA command": ["503 5.5.1 no valid recipients"]})
    outcomes = Seen()
    provider.send(ISSUE, readers("ada", "bob"), outcomes)
    assert outcomes.by_address == {"ada@example.net": ("failed", "DATA refused: 503 5.5.1 no valid recipients"),
                                 "bob@example.net": ("sent", "")}


def test_a_connection_lost_after_a_refusal_is_made_anew_for_the_next(scripted: Scripted) -> None:
    server, provider = scripted({"RCPT": ["550 5.1.1 no such user"], "RSET": ["close"]})
    outcomes = Seen()
    provider.send(ISSUE, readers("ada", "bob"), outcomes)
    assert outcomes.by_address == {"ada@example.net": ("failed", "RCPT TO refused: 550 5.1.1 no such user"),
                                 "bob@example.net": ("sent", "")}
    assert server.connections == 2


def test_a_connection_lost_before_the_message_defers_it(scripted: Scripted) -> None:
    _, provider = scripted({"RCPT": ["close"]})
    outcomes = Seen()
    provider.send(ISSUE, readers("ada"), outcomes)
    status, reason = outcomes.by_address["ada@example.net"]
    assert status == "deferred" and reason.startswith("the connection broke before the message was sent")


def test_an_address_or_message_that_cannot_be_written_fails_that_recipient_alone(scripted: Scripted) -> None:
    server, provider = scripted()
    real = provider.message_bytes

    def build(issue: Issue, recipient: Recipient, utf8: bool) -> bytes:
        if recipient.email.startswith("bob"):
            raise ValueError("no room for this one")
        return real(issue, recipient, utf8)

    provider.message_bytes = build  # type: ignore[method-assign]  # one recipient's message fails to build, on cue
    outcomes = Seen()
    broken = Recipient(email="no-at-sign", name="", unsubscribe_url="https://news.example.org/u/x")
    provider.send(ISSUE, [broken, *readers("bob", "cath")], outcomes)
    got = outcomes.by_address
    assert got["no-at-sign"][0] == "failed" and got["no-at-sign"][1].startswith("cannot send to this address: ")
    assert got["bob@example.net"] == ("failed", "the message could not be built: ValueError: no room for this one")
    assert got["cath@example.net"] == ("sent", "") and server.delivered == 1


def test_nothing_more_goes_once_the_scheduler_may_not_send(scripted: Scripted) -> None:
    server, provider = scripted()

    class Stopped(Seen):
        def may_send(self, count: int = 1) -> bool:
            return False

    outcomes = Stopped()
    assert provider.send(ISSUE, readers("ada"), outcomes) == {}
    assert outcomes.by_address == {} and server.connections == 0


def test_an_smtp_server_not_there_is_unreachable_after_its_attempts(settings: Settings) -> None:
    port = free_port()
    provider = SmtpProvider(dataclasses.replace(settings, smtp_url=f"smtps://127.0.0.1:{port}"))
    provider.connect_attempts, provider.backoff_base = 2, 0.01
    with pytest.raises(DeliveryFailed, match=rf"^cannot reach the SMTP server 127\.0\.0\.1:{port} \(.*refused") as failed:
        provider.send(ISSUE, readers("ada"), Collected())
    assert failed.value.retryable, "the scheduler tries again later"


# -- SendGrid ------------------------------------------------------------------

@pytest.fixture
def sendgrid(settings: Settings, sendgrid_server: SendGridServer) -> SendGridProvider:
    provider = SendGridProvider(dataclasses.replace(settings, sendgrid_api_key=API_KEY, sendgrid_host=sendgrid_server.host + "/"))
    provider.backoff_base = 0.01
    return provider


def test_sendgrid_without_an_api_key_says_where_to_set_it(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"^SENDGRID_API_KEY is not set; the sendgrid provider needs it in the environment$"):
        SendGridProvider(dataclasses.replace(settings, sendgrid_api_key=""))


def test_a_wrong_api_key_fails_the_batch_with_sendgrids_words_once(settings: Settings, sendgrid_server: SendGridServer) -> None:
    provider = SendGridProvider(dataclasses.replace(settings, sendgrid_api_key="SG.wrong", sendgrid_host=sendgrid_server.host))
    with pytest.raises(DeliveryFailed, match=r"^SendGrid refused the batch \(401\): The provided authorization grant is "
                                             r"invalid, expired, or revoked$"):
        provider.send(ISSUE, readers("ada"), Collected())
    assert sendgrid_server.requests == 1, "a refusal is not retried"


def test_a_5xx_leaves_the_batch_in_doubt(sendgrid: SendGridProvider, sendgrid_server: SendGridServer) -> None:
    sendgrid_server.fail_next(1, 500)
    with pytest.raises(OutcomeUnknown, match=r"^SendGrid answered 500 \(internal error\); it may have taken the batch"):
        sendgrid.send(ISSUE, readers("ada"), Collected())
    assert sendgrid_server.requests == 1


def test_a_429_without_a_reset_time_is_retried_with_backoff(sendgrid: SendGridProvider, sendgrid_server: SendGridServer) -> None:
    sendgrid_server.fail_next(2, 429)
    sendgrid.send(ISSUE, readers("ada"), Collected())
    assert sendgrid_server.emails() == ["ada@example.net"] and sendgrid_server.requests == 3


def test_sendgrid_unreachable_gives_up_after_its_attempts(settings: Settings) -> None:
    provider = SendGridProvider(dataclasses.replace(settings, sendgrid_api_key=API_KEY,
                                                    sendgrid_host=f"http://127.0.0.1:{free_port()}"))
    provider.max_attempts, provider.backoff_base = 2, 0.01
    with pytest.raises(DeliveryFailed, match=r"^gave up after 2 attempts: cannot reach SendGrid \(") as failed:
        provider.send(ISSUE, readers("ada"), Collected())
    assert failed.value.retryable


def test_a_batch_over_sendgrids_limit_is_refused_before_any_request(sendgrid: SendGridProvider,
                                                                   sendgrid_server: SendGridServer) -> None:
    with pytest.raises(ValueError, match=r"^a SendGrid batch holds at most 1000 recipients$"):
        sendgrid.send(ISSUE, readers(*(f"r{n}" for n in range(1001))), Collected())
    assert sendgrid_server.requests == 0


def test_an_error_body_that_is_not_json_is_shown_as_text() -> None:
    from email.message import Message

    from python_http_client.exceptions import HTTPError

    from newsletter.providers.sendgrid import _sendgrid_message

    headers = Message()
    assert _sendgrid_message(HTTPError(502, "Bad Gateway", b"<html>upstream down</html>", headers)) == "<html>upstream down</html>"
    assert _sendgrid_message(HTTPError(400, "Bad Request", b'{"errors": [{"message": "bad", "field": "from"}]}', headers)) == "bad (from)"


def test_names_go_with_addresses_and_a_sender_without_a_name_has_none(sendgrid: SendGridProvider) -> None:
    sendgrid.settings = dataclasses.replace(sendgrid.settings, sender="editor@example.org")
    body = sendgrid.payload(ISSUE, [Recipient(email="ada@example.net", name="Ada", unsubscribe_url="https://x/u")])
    assert body["from"] == {"email": "editor@example.org"}
    assert body["personalizations"][0]["to"] == [{"email": "ada@example.net", "name": "Ada"}]
