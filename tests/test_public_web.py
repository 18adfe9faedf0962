"""The public app: unsubscribe links that scanners cannot trigger and nobody can forge,
and SendGrid's signed events applied once."""

from __future__ import annotations

import base64
import json
import logging
import time

import httpx2 as httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.tokens import Signer
from newsletter.web.public import create_app

from .live_server import LiveServer
from .conftest import SECRET, add_readers, queue_now, run

ISSUE = "2017-03-06-happy-families-lets-talk-about-new-labour"


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The key as SendGrid shows it in its settings: base64 of the DER public key."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def signed(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


@pytest.fixture
def client(newsletter_with_list: Settings, store: Store, signing_key) -> TestClient:
    import dataclasses

    settings = dataclasses.replace(newsletter_with_list, sendgrid_webhook_public_key=public_key_text(signing_key))
    return TestClient(create_app(settings, store, SECRET))


def token_for(store: Store, address: str) -> str:
    with store.engine.connect() as conn:
        return Signer(SECRET).token(ops.find(conn, address).id, ISSUE)


def status_of(store: Store, address: str) -> str:
    with store.engine.connect() as conn:
        return ops.find(conn, address).status


def test_get_shows_a_button_and_changes_nothing(client: TestClient, store: Store) -> None:
    response = client.get("/unsubscribe", params={"token": token_for(store, "ada.lovelace@example.com")})
    assert response.status_code == 200
    assert "<button" in response.text and "ada.lovelace@example.com" in response.text
    assert status_of(store, "ada.lovelace@example.com") == "active"


def test_one_click_post_unsubscribes_and_a_second_post_is_still_fine(client: TestClient, store: Store) -> None:
    token = token_for(store, "ada.lovelace@example.com")
    response = client.post(f"/unsubscribe?token={token}", content=b"List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert status_of(store, "ada.lovelace@example.com") == "unsubscribed"
    assert client.post(f"/unsubscribe?token={token}").status_code == 200
    assert status_of(store, "ada.lovelace@example.com") == "unsubscribed"


def test_the_button_form_unsubscribes_too(client: TestClient, store: Store) -> None:
    token = token_for(store, "bert.hopper@example.org")
    page = client.get(f"/unsubscribe?token={token}").text
    assert f'action="?token={token}"' in page
    assert client.post(f"/unsubscribe?token={token}", data={}).status_code == 200
    assert status_of(store, "bert.hopper@example.org") == "unsubscribed"


@pytest.mark.parametrize("token", ["made-up-token-123", "", "WzEsIngiXQ.bad-signature", Signer("another secret").token(1, ISSUE)])
def test_forged_or_tampered_tokens_get_400_and_change_nothing(client: TestClient, store: Store, token: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.web")
    before = run("subscribers", "count").output
    assert client.get(f"/unsubscribe?token={token}").status_code == 400
    response = client.post(f"/unsubscribe?token={token}", content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 400 and "does not work" in response.text
    assert run("subscribers", "count").output == before
    if token:
        assert token not in caplog.text, "tokens never reach the log"


def test_a_valid_token_for_an_unknown_subscriber_is_refused(client: TestClient) -> None:
    assert client.post(f"/unsubscribe?token={Signer(SECRET).token(99999, ISSUE)}").status_code == 400


def test_after_unsubscribing_the_scheduler_sends_them_nothing(client: TestClient, store: Store, newsletter_with_list: Settings) -> None:
    client.post(f"/unsubscribe?token={token_for(store, 'cath.jones@example.net')}", content=b"List-Unsubscribe=One-Click")
    queue_now()
    run("scheduler", "--once")
    recipients = [p.read_text(errors="replace") for p in newsletter_with_list.outbox_path.rglob("*.eml")]
    assert recipients and not any("To: Cath Jones" in text for text in recipients)


def test_the_archive_is_served_from_the_build(client: TestClient) -> None:
    assert "Every issue" in client.get("/").text
    assert client.get("/feed.xml").status_code == 200
    assert "Happy Families?" in client.get(f"/{ISSUE}/").text


def events_body(*events: dict) -> bytes:
    return json.dumps(list(events)).encode()


def test_signed_events_apply_bounces_complaints_and_unsubscribes(client: TestClient, store: Store, signing_key) -> None:
    body = events_body(
        {"email": "ada.lovelace@example.com", "event": "bounce", "sg_event_id": "e1"},
        {"email": "bert.hopper@example.org", "event": "spamreport", "sg_event_id": "e2"},
        {"email": "cath.jones@example.net", "event": "group_unsubscribe", "sg_event_id": "e3"},
        {"email": "dev.patel@example.com", "event": "dropped", "reason": "Bounced Address", "sg_event_id": "e4"},
        {"email": "ellen.wilkinson@example.org", "event": "unsubscribe", "sg_event_id": "e5"},
        {"email": "farid.khan@example.net", "event": "delivered", "sg_event_id": "e6"},
    )
    response = client.post("/webhooks/sendgrid", content=body, headers=signed(signing_key, body))
    assert response.status_code == 200, response.text
    assert [status_of(store, a) for a in ("ada.lovelace@example.com", "bert.hopper@example.org", "cath.jones@example.net",
                                          "dev.patel@example.com", "ellen.wilkinson@example.org", "farid.khan@example.net")] == [
        "bounced", "complained", "unsubscribed", "bounced", "unsubscribed", "active"]


def test_a_replayed_batch_is_applied_once(client: TestClient, store: Store, signing_key) -> None:
    body = events_body({"email": "ada.lovelace@example.com", "event": "bounce", "sg_event_id": "same"})
    assert client.post("/webhooks/sendgrid", content=body, headers=signed(signing_key, body)).json()["changed"] == 1
    with store.begin() as conn:
        ops.resubscribe(conn, "ada.lovelace@example.com", "the subscriber asked")
    again = client.post("/webhooks/sendgrid", content=body, headers=signed(signing_key, body)).json()
    assert again == {"events": 1, "changed": 0, "replayed": 1, "ignored": 0, "invalid": 0}
    assert status_of(store, "ada.lovelace@example.com") == "active"


@pytest.mark.parametrize("case", ["bad-signature", "no-signature", "stale", "other-key"])
def test_unproven_webhook_calls_are_refused_with_403(client: TestClient, store: Store, signing_key, case: str) -> None:
    body = events_body({"email": "ada.lovelace@example.com", "event": "bounce", "sg_event_id": "x1"})
    headers = signed(signing_key, body)
    if case == "bad-signature":
        headers = signed(signing_key, body.replace(b"bounce", b"spamreport"))
    elif case == "no-signature":
        headers = {"Content-Type": "application/json"}
    elif case == "stale":
        headers = signed(signing_key, body, timestamp=int(time.time()) - 301)
    elif case == "other-key":
        headers = signed(ec.generate_private_key(ec.SECP256R1()), body)
    assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 403
    assert status_of(store, "ada.lovelace@example.com") == "active"


def test_without_a_public_key_every_webhook_is_refused_and_the_log_says_why(newsletter_with_list, store, signing_key, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.web")
    body = events_body({"email": "ada.lovelace@example.com", "event": "bounce", "sg_event_id": "x2"})
    client = TestClient(create_app(newsletter_with_list, store, SECRET))
    headers = signed(signing_key, body)
    assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 403
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in caplog.text
    assert headers["X-Twilio-Email-Event-Webhook-Signature"] not in caplog.text


def test_a_malformed_body_is_400(client: TestClient, signing_key) -> None:
    for body in (b"not json", b'{"event": "bounce"}', b"[" * 100_000):
        assert client.post("/webhooks/sendgrid", content=body, headers=signed(signing_key, body)).status_code == 400


def test_a_thousand_events_apply_in_one_transaction(client: TestClient, store: Store, signing_key) -> None:
    add_readers(store, 1000)
    events = [{"email": f"reader{n}@example.net", "event": "bounce", "sg_event_id": f"bulk-{n}"} for n in range(1000)]
    body = events_body(*events)
    response = client.post("/webhooks/sendgrid", content=body, headers=signed(signing_key, body))
    assert response.json() == {"events": 1000, "changed": 1000, "replayed": 0, "ignored": 0, "invalid": 0}
    with store.engine.connect() as conn:
        assert ops.counts(conn)["bounced"] == 1000
    # One odd event is counted invalid; it does not keep the other 999 from applying
    # (refused, SendGrid would post the same body again and again).
    add_readers(store, 1000, start=1000)
    events = [{"email": f"reader{n}@example.net", "event": "bounce", "sg_event_id": f"bulk2-{n}"} for n in range(1000, 2000)]
    events[500]["email"] = 12345  # type: ignore[assignment]  # a number where SendGrid sends an address: refused
    body = events_body(*events)
    response = client.post("/webhooks/sendgrid", content=body, headers=signed(signing_key, body))
    assert response.status_code == 200 and (response.json()["changed"], response.json()["invalid"]) == (999, 1)
    with store.engine.connect() as conn:
        assert ops.counts(conn)["bounced"] == 1999


def test_one_click_through_a_real_uvicorn(newsletter_with_list: Settings, store: Store) -> None:
    with LiveServer(create_app(newsletter_with_list, store, SECRET)) as server:
        token = token_for(store, "dev.patel@example.com")
        assert httpx.get(f"{server.url}/unsubscribe?token={token}").status_code == 200
        assert status_of(store, "dev.patel@example.com") == "active"
        response = httpx.post(f"{server.url}/unsubscribe?token={token}", content="List-Unsubscribe=One-Click",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 200
        assert status_of(store, "dev.patel@example.com") == "unsubscribed"
        assert httpx.get(f"{server.url}/unsubscribe?token=forged").status_code == 400
        assert "Every issue" in httpx.get(f"{server.url}/").text


def test_access_log_lines_never_carry_a_token() -> None:
    from newsletter.web.public import RedactTokens

    token = Signer(SECRET).token(1, ISSUE)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/unsubscribe?token={token}", "1.1", 200), None)
    RedactTokens().filter(record)
    assert token not in record.getMessage() and "token=[redacted]" in record.getMessage()
