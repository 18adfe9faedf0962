"""Suppressions from webhooks and the editor hold for addresses on the list or not,
and SendGrid's events mean what SendGrid says they mean."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.store.csvio import import_csv
from newsletter.web.public import create_app

from .conftest import sendgrid_public_key, sendgrid_signed, statuses_in, write_csv


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def client(store_settings: Settings, store: Store, signing_key: ec.EllipticCurvePrivateKey) -> TestClient:
    settings = dataclasses.replace(store_settings, sendgrid_webhook_public_key=sendgrid_public_key(signing_key))
    return TestClient(create_app(settings, store, settings.secret))


def post_events(client: TestClient, key: ec.EllipticCurvePrivateKey, *events: object) -> dict:
    body = json.dumps(list(events)).encode()
    response = client.post("/webhooks/sendgrid", content=body, headers=sendgrid_signed(key, body))
    assert response.status_code == 200, response.text
    return response.json()


def add_all(store: Store, *addresses: str) -> None:
    with store.begin() as conn:
        for address in addresses:
            ops.add(conn, address)


def test_only_permanent_problems_suppress(client: TestClient, store: Store, signing_key: ec.EllipticCurvePrivateKey) -> None:
    add_all(store, "blocked@example.com", "hard@example.com", "spamdrop@example.com", "baddrop@example.com", "other@example.com")
    result = post_events(
        client, signing_key,
        {"email": "blocked@example.com", "event": "bounce", "type": "Blocked ", "sg_event_id": "b1"},
        {"email": "hard@example.com", "event": "bounce", "type": "bounce", "sg_event_id": "b2"},
        {"email": "spamdrop@example.com", "event": "dropped", "reason": "Spam Content (if spam checker app enabled)", "sg_event_id": "d1"},
        {"email": "baddrop@example.com", "event": "dropped", "reason": "Bounced Address", "sg_event_id": "d2"},
        {"email": "other@example.com", "event": "delivered", "sg_event_id": "x1"},
        {"email": "other@example.com", "event": "brand_new_kind", "sg_event_id": "x2"},
    )
    assert (result["changed"], result["ignored"]) == (2, 1)
    assert statuses_in(store) == {"blocked@example.com": "active", "hard@example.com": "bounced", "spamdrop@example.com": "active",
                                  "baddrop@example.com": "bounced", "other@example.com": "active"}


def test_webhook_suppressions_for_unknown_addresses_hold_against_import_and_add(
        client: TestClient, store: Store, store_settings: Settings, signing_key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    result = post_events(
        client, signing_key,
        {"email": "gone@example.com", "event": "bounce", "sg_event_id": "u1"},
        {"email": "angry@example.com", "event": "spamreport", "sg_event_id": "u2"},
        {"email": "bye@example.com", "event": "unsubscribe", "sg_event_id": "u3"},
    )
    assert result["changed"] == 3
    report = import_csv(store, write_csv(tmp_path / "list.csv", "email\ngone@example.com\nANGRY@example.com\nbye@example.com\n"))
    assert (report.added, report.suppressed) == (0, 3)
    assert CliRunner().invoke(cli, ["subscribers", "add", "bye@example.com"]).exit_code == 1
    assert statuses_in(store) == {"gone@example.com": "bounced", "angry@example.com": "complained", "bye@example.com": "unsubscribed"}
    shown = CliRunner().invoke(cli, ["subscribers", "show", "angry@example.com"])
    assert shown.exit_code == 0 and "complained" in shown.output and "SendGrid spamreport event u2" in shown.output


def test_an_oversized_or_hostile_field_leaves_the_other_events_applied(
        client: TestClient, store: Store, signing_key: ec.EllipticCurvePrivateKey) -> None:
    add_all(store, "ada@example.com", "bert@example.org")
    long_id = "id-" + "x" * 5000
    events = [
        {"email": "ada@example.com", "event": "bounce", "sg_event_id": long_id},
        {"email": "someone@example.com", "event": "x" * 500, "sg_event_id": "weird-kind"},
        {"email": "n" * 1000 + "@example.com", "event": "bounce", "sg_event_id": "long-address"},
        {"email": "nul\x00@example.com", "event": "spamreport", "sg_event_id": "nul-address"},
        {"email": "bert@example.org", "event": "spamreport", "sg_event_id": "nul\x00id"},
        {"email": ["ada@example.com"], "event": "unsubscribe", "sg_event_id": "list-address"},
        {"email": "ada@example.com", "event": "bounce", "sg_event_id": 12345},
        {"email": "ada@example.com", "event": None, "sg_event_id": "no-kind"},
        "not an event",
    ]
    result = post_events(client, signing_key, *events)
    assert (result["changed"], result["ignored"], result["invalid"]) == (2, 1, 6)
    assert statuses_in(store) == {"ada@example.com": "bounced", "bert@example.org": "complained"}
    assert post_events(client, signing_key, *events)["replayed"] == 6, "a long id is still recognised when replayed"


def test_remove_says_truthfully_what_it_did_and_an_unknown_address_stays_suppressed(
        store: Store, store_settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["subscribers", "remove", "Never@Example.com"])
    assert result.exit_code == 0 and "was not on the list; kept as unsubscribed" in result.output
    assert runner.invoke(cli, ["subscribers", "add", "never@example.com"]).exit_code == 1
    import_csv(store, write_csv(tmp_path / "list.csv", "email,status\nnever@example.com,active\n"))
    assert statuses_in(store) == {"Never@example.com": "unsubscribed"}
    assert "was already unsubscribed; left so" in runner.invoke(cli, ["subscribers", "remove", "never@example.com"]).output
    runner.invoke(cli, ["subscribers", "add", "ada@example.com"])
    assert runner.invoke(cli, ["subscribers", "remove", "ada@example.com"]).output.strip() == "ada@example.com is unsubscribed"
    with store.begin() as conn:  # signed up, not yet confirmed: removing withdraws the signup
        ops.add_pending(conn, "pat@example.com", "", "signup form")
    assert runner.invoke(cli, ["subscribers", "remove", "pat@example.com"]).output.strip() == "pat@example.com is unsubscribed"


def test_a_refused_add_changes_nothing_of_a_suppressed_address(store: Store, store_settings: Settings) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "remove", "zed@example.com"])
    refused = runner.invoke(cli, ["subscribers", "add", "zed@example.com", "--name", "Zed"])
    assert refused.exit_code == 1 and "stays so" in refused.output
    with store.engine.connect() as conn:
        found = ops.find(conn, "zed@example.com")
    assert found is not None and (found.status, found.name) == ("unsubscribed", "")


def test_show_prints_status_attributes_and_every_change_with_its_source(store: Store, store_settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    import_csv(store, write_csv(tmp_path / "list.csv", "email,name,town\nada@example.com,Ada,Durham\n"))
    runner.invoke(cli, ["subscribers", "remove", "ada@example.com"])
    runner.invoke(cli, ["subscribers", "add", "ada@example.com", "--resubscribe"])
    result = runner.invoke(cli, ["subscribers", "show", "ADA@example.com"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ada@example.com" and "status:  active" in lines[1] and "town: Durham" in result.output
    history = lines[lines.index("  history:") + 1:]
    assert [line.split()[3] for line in history] == ["active", "unsubscribed", "active"]
    assert "import of list.csv" in history[0] and "removed by the editor" in history[1] and "re-subscribed" in history[2]
    missing = runner.invoke(cli, ["subscribers", "show", "nobody@example.com"])
    assert missing.exit_code == 1 and "not on the list" in missing.output


def test_an_address_add_now_refuses_can_still_be_suppressed(
        client: TestClient, store: Store, store_settings: Settings, signing_key: ec.EllipticCurvePrivateKey) -> None:
    from sqlalchemy import insert

    from newsletter.store.schema import subscribers, utcnow

    now = utcnow()
    with store.begin() as conn:  # as an earlier version stored them: non-ASCII before the @
        conn.execute(insert(subscribers), [
            dict(email=email, email_key=email.casefold(), name="", attributes={}, status="active", source="old version",
                 created_at=now, updated_at=now, status_changed_at=now)
            for email in ("jörg@example.com", "zoë@example.com")
        ])
    assert CliRunner().invoke(cli, ["subscribers", "add", "new.jörg@example.com"]).exit_code == 1
    assert post_events(client, signing_key, {"email": "Jörg@example.com", "event": "bounce", "sg_event_id": "j1"})["changed"] == 1
    result = CliRunner().invoke(cli, ["subscribers", "remove", "zoë@example.com"])
    assert result.exit_code == 0 and "is unsubscribed" in result.output
    assert statuses_in(store) == {"jörg@example.com": "bounced", "zoë@example.com": "unsubscribed"}
