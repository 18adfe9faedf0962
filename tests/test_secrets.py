"""Unsubscribe links outlive a rotated secret, and a lost secret is never silently replaced."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from itsdangerous import Signer as ItsdangerousSigner
from starlette.testclient import TestClient

from newsletter.cli import cli
from newsletter.config import ConfigError, Settings, load_settings
from newsletter.store import Store, open_store
from newsletter.store import subscribers as ops
from newsletter.tokens import SALT, BadToken, Signer, load_secret, secret_file
from newsletter.web.public import create_app

OLD_SECRET = "test-secret-for-signing-links"  # what the store_settings fixture sets


def test_tokens_are_itsdangerous_default_signatures_so_sent_links_keep_working() -> None:
    # The fixed vector pins the format; itsdangerous' own Signer proves the compatibility.
    assert Signer("x" * 43).token(42, "2017-02-13-say-what-you-mean") == "42:2017-02-13-say-what-you-mean.stUXwSNySkH4hHAqQdyUadQlQ6Y"
    reference = ItsdangerousSigner("a secret", salt=SALT)
    for subscriber_id, issue in ((1, "x"), (98765, "2017-03-06-happy-families-lets-talk-about-new-labour")):
        ours = Signer("a secret").token(subscriber_id, issue)
        assert ours == reference.sign(f"{subscriber_id}:{issue}").decode()
        assert Signer("a secret").verify(reference.sign(f"{subscriber_id}:{issue}").decode()).subscriber_id == subscriber_id


def test_fallback_secrets_verify_but_never_sign() -> None:
    old = Signer("old").token(7, "issue")
    rotated = Signer("new", ["older", "old"])
    assert rotated.verify(old).subscriber_id == 7
    assert rotated.token(7, "issue") == Signer("new").token(7, "issue") != old
    with pytest.raises(BadToken):
        Signer("new").verify(old)
    with pytest.raises(BadToken):
        rotated.verify(Signer("someone else").token(7, "issue"))


def links_in_the_outbox(settings: Settings) -> dict[str, str]:
    """Recipient address → the unsubscribe token in the List-Unsubscribe header of their .eml."""
    links = {}
    for path in sorted(settings.outbox_path.glob("send-*/*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        links[message["To"].addresses[0].addr_spec] = str(message["List-Unsubscribe"]).strip("<>").split("token=")[1]
    return links


def status_of(store: Store, address: str) -> str:
    with store.engine.connect() as conn:
        return ops.find(conn, address).status


def test_a_link_from_a_real_eml_survives_rotation_only_while_the_old_secret_is_a_fallback(
        newsletter_with_list: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["queue", "2017-03-06-happy-families-lets-talk-about-new-labour", "--at", "now", "--yes"]).exit_code == 0
    assert runner.invoke(cli, ["scheduler", "--once"]).exit_code == 0
    links = links_in_the_outbox(newsletter_with_list)
    first, second = "ada.lovelace@example.com", "bert.hopper@example.org"

    monkeypatch.setenv("NEWSLETTER_SECRET", "a-brand-new-secret-after-rotation")
    monkeypatch.setenv("NEWSLETTER_SECRET_FALLBACKS", f"an-even-older-one, {OLD_SECRET}")
    rotated = load_settings(newsletter_with_list.root)
    client = TestClient(create_app(rotated, store, load_secret(rotated)))
    response = client.post(f"/unsubscribe?token={links[first]}", content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert status_of(store, first) == "unsubscribed"
    shown = runner.invoke(cli, ["subscribers", "show", first]).output  # and the history says from which email
    assert "unsubscribed  one-click unsubscribe (RFC 8058) in 2017-03-06-happy-families-lets-talk-about-new-labour" in shown

    monkeypatch.delenv("NEWSLETTER_SECRET_FALLBACKS")
    without = load_settings(newsletter_with_list.root)
    client = TestClient(create_app(without, store, load_secret(without)))
    response = client.post(f"/unsubscribe?token={links[second]}", content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 400 and "does not work" in response.text
    assert status_of(store, second) == "active"


def test_a_lost_secret_file_beside_a_list_is_an_error_not_a_new_secret(settings: Settings) -> None:
    store = open_store(settings)
    first = load_secret(settings)
    with store.begin() as conn:
        ops.add(conn, "ada@example.com")
    store.dispose()
    path = secret_file(settings)
    assert path is not None
    path.unlink()
    with pytest.raises(ConfigError, match=r"secret is missing|is missing") as caught:
        load_secret(settings)
    assert "holds 1 subscriber:" in str(caught.value) and "Restore the file" in str(caught.value)
    assert not path.exists(), "no new secret may be made over a list whose links need the old one"

    result = CliRunner().invoke(cli, ["scheduler", "--once"])
    assert result.exit_code == 1 and "is missing" in result.output and "Traceback" not in result.output
    assert not path.exists()
    path.write_text(first)
    assert load_secret(settings) == first


def test_a_new_secret_is_made_for_an_empty_database(settings: Settings, project: Path) -> None:
    open_store(settings).dispose()
    assert len(load_secret(settings)) >= 32


def test_an_empty_secret_file_is_never_used_to_sign(settings: Settings) -> None:
    # An empty secret would sign links anyone can forge: it is refused like a missing one.
    store = open_store(settings)
    load_secret(settings)
    path = secret_file(settings)
    assert path is not None
    path.write_text("\n")
    with store.begin() as conn:
        ops.add(conn, "ada@example.com")
    store.dispose()
    with pytest.raises(ConfigError, match=r"is empty, but .* holds 1 subscriber:"):
        load_secret(settings)
    assert path.read_text() == "\n"
    result = CliRunner().invoke(cli, ["scheduler", "--once"])
    assert result.exit_code == 1 and "is empty" in result.output and "Traceback" not in result.output


def test_an_empty_secret_file_beside_an_empty_database_is_replaced(settings: Settings) -> None:
    open_store(settings).dispose()
    path = secret_file(settings)
    assert path is not None
    path.write_text("")
    assert len(load_secret(settings)) >= 32 and path.read_text().strip() == load_secret(settings)


def test_a_list_moved_off_the_default_database_is_told_which_secret_its_links_need(
        settings: Settings, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    moved = dataclasses.replace(settings, database_url=postgres_url)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET is not set") as fresh:
        load_secret(moved)
    assert "long random string" in str(fresh.value)
    first = load_secret(settings)  # the default database's own secret, made beside it
    with pytest.raises(ConfigError) as caught:
        load_secret(moved)
    assert str(secret_file(settings)) in str(caught.value) and "already sent was signed with it" in str(caught.value)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", postgres_url)
    result = CliRunner().invoke(cli, ["scheduler", "--once"])
    assert result.exit_code == 1 and "cat " in result.output and "Traceback" not in result.output
    assert load_secret(dataclasses.replace(moved, secret=first)) == first
