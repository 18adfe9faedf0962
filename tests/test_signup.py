"""The signup form: double opt-in that reveals nothing, that scanners and bots cannot abuse,
and that lifts a suppression only on the subscriber's own confirmation."""

from __future__ import annotations

import email
import email.policy
import json

import dataclasses
import logging
import re
import time
from email.message import EmailMessage

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from starlette.testclient import TestClient

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.signup import Outcome, Post, Signups, truncate_ip
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.store.csvio import import_csv
from newsletter.store.schema import signups, subscribers
from newsletter.store.signups import consents
from newsletter.tokens import CONFIRM_SALT, Signer
from newsletter.web.public import create_app

from .conftest import form_started, sent_one_by_one, write_csv

ACTIVE = "ada.lovelace@example.com"  # on the sample list
NEW = "grace@example.org"
CLIENT = ("203.0.113.77", 50000)


def app_client(settings: Settings, store: Store, **changes: object) -> TestClient:
    settings = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]  # each test names real Settings fields
    return TestClient(create_app(settings, store, settings.secret), client=CLIENT)


@pytest.fixture
def client(newsletter_with_list: Settings, store: Store) -> TestClient:
    return app_client(newsletter_with_list, store)


def post_form(client: TestClient, settings: Settings, address: str, seconds_ago: float = 10, **extra: str):
    fields = {"email": address, "name": "", "started": form_started(settings, seconds_ago), "website": "",
              "form": "subscribe page", **extra}
    return client.post("/subscribe", data=fields)


def status_of(store: Store, address: str) -> str | None:
    with store.read() as conn:
        found = ops.find(conn, address)
    return found.status if found else None


def signup_rows(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(signups)).scalar() or 0)


def subscriber_rows(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(subscribers)).scalar() or 0)


def confirm_link(message: EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"https?://\S+/confirm\?token=\S+", text).group(0)


def local(url: str) -> str:
    return url[url.index("/confirm"):]


def answer(response) -> tuple[int, str, dict[str, str]]:
    """What a client can see of a response, but the date."""
    return response.status_code, response.text, {k: v for k, v in response.headers.items() if k != "date"}


def test_new_active_and_suppressed_addresses_get_the_same_answer(client: TestClient, store: Store,
                                                                 newsletter_with_list: Settings) -> None:
    settings = newsletter_with_list
    with store.begin() as conn:
        ops.unsubscribe(conn, "charles.babbage@example.com", "test")
    answers = [answer(post_form(client, settings, a)) for a in (NEW, ACTIVE, "charles.babbage@example.com")]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 200 and "Check your inbox" in answers[0][1]
    json_answers = [answer(client.post("/subscribe", json={"email": a, "started": form_started(settings, 10)}))
                    for a in ("someone.else@example.org", ACTIVE, "charles.babbage@example.com")]
    assert json_answers[0] == json_answers[1] == json_answers[2]
    assert json_answers[0][2]["content-type"] == "application/json"

    # Only the email, which goes to the address's owner, differs.
    sent = {(m["To"], m["Subject"]) for m in sent_one_by_one(settings)}
    assert (NEW, f"Confirm your subscription to {settings.site_name}") in sent
    assert any(ACTIVE in to and subject.startswith("You are already subscribed") for to, subject in sent)
    assert any("charles.babbage@example.com" in to and subject.startswith("Confirm") for to, subject in sent)
    assert status_of(store, NEW) == "pending"
    assert status_of(store, ACTIVE) == "active"
    assert status_of(store, "charles.babbage@example.com") == "unsubscribed"


@pytest.mark.parametrize("bot", ["honeypot", "too fast"])
def test_a_bot_post_looks_like_success_but_stores_and_sends_nothing(
        client: TestClient, store: Store, newsletter_with_list: Settings, bot: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = newsletter_with_list
    genuine = answer(post_form(client, settings, "someone@example.net"))
    before = (subscriber_rows(store), signup_rows(store), len(sent_one_by_one(settings)))
    caplog.set_level(logging.INFO)
    if bot == "honeypot":
        response = post_form(client, settings, NEW, website="http://spam.example")
    else:
        response = post_form(client, settings, NEW, seconds_ago=0.5)
    assert answer(response) == genuine
    assert (subscriber_rows(store), signup_rows(store), len(sent_one_by_one(settings))) == before
    assert status_of(store, NEW) is None
    assert "refused" in caplog.text and NEW not in caplog.text


def test_limits_per_address_per_day_and_per_network_per_hour(newsletter_with_list: Settings, store: Store,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    settings = newsletter_with_list
    client = app_client(settings, store, signup_per_address_per_day=2, signup_per_ip_per_hour=4)
    caplog.set_level(logging.INFO)
    answers = [answer(post_form(client, settings, NEW)) for _ in range(4)]
    assert all(a == answers[0] for a in answers)  # refused posts look the same
    assert len(sent_one_by_one(settings)) == 2
    # Another address from the same /24 network: two more go out, then the network is held.
    for n in range(3):
        post_form(client, settings, f"reader{n}@example.net")
    assert len(sent_one_by_one(settings)) == 4
    assert status_of(store, "reader2@example.net") is None  # refused: nothing created
    # A different network is not held.
    other = TestClient(client.app, client=("198.51.100.5", 1))
    post_form(other, settings, "reader9@example.net")
    assert len(sent_one_by_one(settings)) == 5
    assert NEW not in caplog.text and "reader2@example.net" not in caplog.text


def test_get_changes_nothing_post_subscribes_records_consent_and_welcomes(
        client: TestClient, store: Store, newsletter_with_list: Settings) -> None:
    settings = newsletter_with_list
    post_form(client, settings, NEW, name="Grace Hopper")
    link = local(confirm_link(sent_one_by_one(settings)[-1]))

    page = client.get(link)
    assert page.status_code == 200 and "<button" in page.text and NEW in page.text
    assert status_of(store, NEW) == "pending"
    assert len(sent_one_by_one(settings)) == 1

    done = client.post(link)
    assert done.status_code == 200 and "you are subscribed" in done.text
    assert status_of(store, NEW) == "active"
    with store.read() as conn:
        subscriber = ops.find(conn, NEW)
        [consent] = consents(conn, subscriber.id)
    assert consent.form == "subscribe page" and consent.requested_ip == consent.confirmed_ip == "203.0.113.0"
    assert consent.confirmed_at is not None

    welcome = sent_one_by_one(settings)[-1]
    assert welcome["Subject"] == f"Welcome to {settings.site_name}"
    unsubscribe = welcome["List-Unsubscribe"].strip("<>")
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in welcome.get_body(("plain",)).get_content()
    assert unsubscribe.replace("&", "&amp;") in welcome.get_body(("html",)).get_content()

    # A second press is still a thank-you, and sends nothing more.
    again = client.post(link)
    assert again.status_code == 200 and "you are subscribed" in again.text
    assert len(sent_one_by_one(settings)) == 2
    # The welcome's own unsubscribe link works.
    client.post(unsubscribe[unsubscribe.index("/unsubscribe"):], content=b"List-Unsubscribe=One-Click")
    assert status_of(store, NEW) == "unsubscribed"
    # And the old confirmation link does not bring them back.
    client.post(link)
    assert status_of(store, NEW) == "unsubscribed"


def test_an_unsubscribed_address_comes_back_only_through_the_confirmation_post(
        client: TestClient, store: Store, newsletter_with_list: Settings) -> None:
    settings = newsletter_with_list
    with store.begin() as conn:
        ops.unsubscribe(conn, ACTIVE, "test")
    post_form(client, settings, ACTIVE)
    link = local(confirm_link(sent_one_by_one(settings)[-1]))
    assert status_of(store, ACTIVE) == "unsubscribed"
    client.get(link)
    assert status_of(store, ACTIVE) == "unsubscribed"
    assert CliRunner().invoke(cli, ["subscribers", "add", ACTIVE]).exit_code == 1
    import_csv(store, write_csv(settings.root / "again.csv", f"email,status\n{ACTIVE},active\n"))
    assert status_of(store, ACTIVE) == "unsubscribed"

    client.post(link)
    assert status_of(store, ACTIVE) == "active"
    with store.read() as conn:
        history = [change.status for change in ops.history(conn, ops.find(conn, ACTIVE).id)]
    assert history[-2:] == ["unsubscribed", "active"]


def test_forged_expired_and_replaced_links_answer_400_and_change_nothing(
        client: TestClient, store: Store, newsletter_with_list: Settings) -> None:
    settings = newsletter_with_list
    service = Signups(settings, store, settings.secret)
    long_ago = time.time() - 49 * 3600
    assert service.request(Post(email=NEW, started=service.form_token(long_ago - 10), ip="203.0.113.1"),
                           now=long_ago) == Outcome.CONFIRMATION_SENT
    expired = local(confirm_link(sent_one_by_one(settings)[-1]))

    post_form(client, settings, "replaced@example.org")
    first = local(confirm_link(sent_one_by_one(settings)[-1]))
    post_form(client, settings, "replaced@example.org")
    newest = local(confirm_link(sent_one_by_one(settings)[-1]))
    assert first != newest

    with store.read() as conn:
        pending_id = ops.find(conn, NEW).id
    value = expired.partition("token=")[2].rpartition(".")[0]
    newest_value = newest.partition("token=")[2].rpartition(".")[0]
    number, _, stamp = newest_value.partition(":")
    forged = [
        f"/confirm?token={value}.{'A' * 27}",  # a made-up signature
        # Signed by us, but for a row of that id made at another time (a database made anew):
        f"/confirm?token={Signer(settings.secret, salt=CONFIRM_SALT).sign(f'{number}:{int(stamp) - 3600}')}",
        # The same value signed for another purpose (unsubscribe links) never confirms:
        f"/confirm?token={Signer(settings.secret).sign(newest_value)}",
        f"/confirm?token={Signer(settings.secret).token(pending_id, 'confirm')}",
        "/confirm?token=",
        "/confirm?token=%00%ff<svg>",
    ]
    for link in [expired, first, *forged]:
        for method in (client.get, client.post):
            response = method(link)
            assert response.status_code == 400, (link, response.text)
            assert "This link does not work" in response.text and "<svg>" not in response.text
    assert status_of(store, NEW) == "pending"
    assert status_of(store, "replaced@example.org") == "pending"
    with store.read() as conn:
        assert consents(conn, pending_id) == []
    assert client.post(newest).status_code == 200
    assert status_of(store, "replaced@example.org") == "active"


def test_a_link_asked_for_before_a_bounce_cannot_undo_it(client: TestClient, store: Store,
                                                          newsletter_with_list: Settings) -> None:
    settings = newsletter_with_list
    post_form(client, settings, NEW)
    link = local(confirm_link(sent_one_by_one(settings)[-1]))
    time.sleep(0.01)
    with store.begin() as conn:
        ops.suppress(conn, NEW, "bounced", "webhook event 1")
    assert client.post(link).status_code == 400
    assert status_of(store, NEW) == "bounced"


def test_pending_subscribers_are_listed_and_never_sent_an_issue(
        client: TestClient, store: Store, newsletter_with_list: Settings) -> None:
    settings = newsletter_with_list
    post_form(client, settings, NEW)
    listed = CliRunner().invoke(cli, ["subscribers", "list", "--status", "pending", "--json"])
    assert listed.exit_code == 0
    assert [(s["email"], s["status"]) for s in json.loads(listed.output)] == [(NEW, "pending")]
    runner = CliRunner()
    assert runner.invoke(cli, ["queue", "2017-03-06-happy-families-lets-talk-about-new-labour", "--at", "now",
                               "--yes"]).exit_code == 0
    assert runner.invoke(cli, ["scheduler", "--once"]).exit_code == 0
    recipients = {str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"])
                  for p in settings.outbox_path.glob("send-*/*.eml")}
    assert recipients and not any(NEW in r for r in recipients)
    assert any(ACTIVE in r for r in recipients)


def test_json_posts_answer_json_and_only_listed_origins_may_post(newsletter_with_list: Settings, store: Store) -> None:
    settings = newsletter_with_list
    client = app_client(settings, store, signup_origins="https://friend.example, https://other.example:8443")
    body = {"email": NEW, "started": form_started(settings, 10)}
    ok = client.post("/subscribe", json=body, headers={"Origin": "https://friend.example"})
    assert ok.status_code == 200 and ok.json()["ok"] is True
    assert ok.headers["access-control-allow-origin"] == "https://friend.example"
    preflight = client.options("/subscribe", headers={"Origin": "https://other.example:8443",
                                                      "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "https://other.example:8443"

    before = (subscriber_rows(store), signup_rows(store), len(sent_one_by_one(settings)))
    for origin in ("https://evil.example", "null"):
        refused = client.post("/subscribe", json={**body, "email": "victim@example.net"}, headers={"Origin": origin})
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
        form = client.post("/subscribe", data={"email": "victim@example.net", "started": form_started(settings, 10)},
                           headers={"Origin": origin})
        assert form.status_code == 403
        assert client.options("/subscribe", headers={"Origin": origin}).status_code == 403
    assert (subscriber_rows(store), signup_rows(store), len(sent_one_by_one(settings))) == before
    with store.read() as conn:
        assert [c.form for c in consents(conn, ops.find(conn, NEW).id)] == []
        assert conn.execute(select(signups.c.form)).scalar() == "subscribe page at https://friend.example"


def test_a_form_without_its_start_time_is_shown_again_filled_in(client: TestClient, store: Store) -> None:
    response = client.post("/subscribe", data={"email": NEW, "name": "Grace <b>H</b>"})
    assert response.status_code == 200 and "press Subscribe once more" in response.text
    assert f'value="{NEW}"' in response.text and "Grace &lt;b&gt;H&lt;/b&gt;" in response.text
    assert re.search(r'name="started" value="[^"]+"', response.text)
    assert status_of(store, NEW) is None


def test_an_address_we_cannot_send_to_is_refused_whoever_it_is(client: TestClient, store: Store,
                                                                 newsletter_with_list: Settings) -> None:
    response = post_form(client, newsletter_with_list, "not an address\r\nBcc: x@example.com")
    assert response.status_code == 400 and "not an email address we can send to" in response.text
    assert signup_rows(store) == 0


def test_add_with_confirm_sends_a_confirmation_instead_of_adding(newsletter_with_list: Settings, store: Store) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "add", NEW, "--confirm"])
    assert result.exit_code == 0, result.output
    assert status_of(store, NEW) == "pending"
    [message] = sent_one_by_one(newsletter_with_list)
    assert message["To"] == NEW and "/confirm?token=" in confirm_link(message)
    bad = CliRunner().invoke(cli, ["subscribers", "add", "nobody", "--confirm"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    for name, reason in (("Bad\x07Name", "control character"), ("n" * 201, "shorten the name")):
        bad = CliRunner().invoke(cli, ["subscribers", "add", "other@example.com", "--confirm", "--name", name])
        assert bad.exit_code == 1 and reason in bad.output and "Traceback" not in bad.output
    assert len(sent_one_by_one(newsletter_with_list)) == 1


def test_the_welcome_is_followed_by_the_newest_issue_when_asked(newsletter_with_list: Settings, store: Store) -> None:
    settings = dataclasses.replace(newsletter_with_list, welcome_newest_issue=True)
    runner = CliRunner()
    assert runner.invoke(cli, ["queue", "2017-03-06-happy-families-lets-talk-about-new-labour", "--at", "now",
                               "--yes"]).exit_code == 0
    assert runner.invoke(cli, ["scheduler", "--once"]).exit_code == 0
    client = app_client(settings, store)
    post_form(client, settings, NEW)
    client.post(local(confirm_link(sent_one_by_one(settings)[-1])))
    welcome, issue = sent_one_by_one(settings)[-2:]
    assert welcome["Subject"].startswith("Welcome")
    assert "New Labour" in issue["Subject"]
    assert issue["To"] == NEW and issue["List-Unsubscribe"]


def test_ip_addresses_are_kept_only_as_their_network() -> None:
    assert truncate_ip("203.0.113.77") == "203.0.113.0"
    assert truncate_ip("2001:db8:1234:5678::1") == "2001:db8:1234::"
    assert truncate_ip("::ffff:198.51.100.9") == "198.51.100.0"
    assert truncate_ip("testclient") == "unknown"


def test_build_writes_the_form_snippet_and_every_page_carries_the_form(newsletter_with_list: Settings) -> None:
    out = newsletter_with_list.output_path
    snippet = (out / "subscribe-form.html").read_text()
    base = newsletter_with_list.base_url.rstrip("/")
    assert f'action="{base}/subscribe"' in snippet and 'name="website"' in snippet
    assert f'src="{base}/subscribe.js"' in snippet
    for page in [out / "index.html", *out.glob("*/index.html")]:
        assert f'action="{base}/subscribe"' in page.read_text(), page
    assert 'name="website"' not in next(out.glob("*/email.html")).read_text()  # emails carry no form


def test_signup_settings_come_from_newsletter_toml_and_the_environment(project) -> None:
    from newsletter.config import ConfigError, load_settings

    (project / "newsletter.toml").write_text('confirm_hours = 12\nwelcome_newest_issue = true\n'
                                             'signup_origins = "https://friend.example"\n')
    settings = load_settings(project, environ={"NEWSLETTER_SIGNUP_PER_IP_PER_HOUR": "7",
                                               "NEWSLETTER_WELCOME_NEWEST_ISSUE": "no"})
    assert (settings.confirm_hours, settings.welcome_newest_issue, settings.signup_per_ip_per_hour,
            settings.signup_origins, settings.signup_min_seconds) == (12.0, False, 7, "https://friend.example", 3.0)
    with pytest.raises(ConfigError, match=r"NEWSLETTER_WELCOME_NEWEST_ISSUE.*true or false"):
        load_settings(project, environ={"NEWSLETTER_WELCOME_NEWEST_ISSUE": "maybe"})


def test_a_script_elsewhere_gets_a_start_time_and_subscribes_in_json(newsletter_with_list: Settings, store: Store) -> None:
    settings = newsletter_with_list
    client = app_client(settings, store, signup_origins="https://friend.example", signup_min_seconds=0)
    origin = {"Origin": "https://friend.example"}
    started = client.get("/subscribe", headers={"Accept": "application/json", **origin})
    assert started.headers["access-control-allow-origin"] == "https://friend.example"
    response = client.post("/subscribe", json={"email": NEW, "name": "Grace", "started": started.json()["started"]},
                           headers=origin)
    assert response.json()["ok"] is True and status_of(store, NEW) == "pending"
    bad = client.post("/subscribe", json={"email": "nobody", "started": started.json()["started"]}, headers=origin)
    assert bad.status_code == 400 and bad.json()["ok"] is False
    assert client.post("/subscribe", json=["not", "an", "object"], headers=origin).status_code == 400


@pytest.mark.parametrize("address", ["ada@bücher.example", "ada@xn--bcher-kva.example", "Zoe.O'Brien+news@Example.COM"])
def test_non_ascii_and_international_addresses_sign_up_and_confirm(client: TestClient, store: Store,
                                                                   newsletter_with_list: Settings, address: str) -> None:
    settings = newsletter_with_list
    assert post_form(client, settings, address).status_code == 200
    message = sent_one_by_one(settings)[-1]
    assert client.post(local(confirm_link(message))).status_code == 200
    assert status_of(store, address) == "active"
    # The same person again, written differently, is not a second subscriber.
    before = subscriber_rows(store)
    post_form(client, settings, address.upper() if address.isascii() else address)
    assert subscriber_rows(store) == before


def test_an_address_only_smtputf8_could_carry_is_refused_with_a_reason(client: TestClient, store: Store,
                                                                       newsletter_with_list: Settings) -> None:
    before = subscriber_rows(store)
    response = post_form(client, newsletter_with_list, "jürgen@bücher.example")
    assert response.status_code == 400 and "before the @-sign" in response.text
    assert 'value="jürgen@bücher.example"' in response.text  # kept in the form to correct
    assert subscriber_rows(store) == before and signup_rows(store) == 0


def test_the_welcome_comes_from_the_newsletters_own_templates_when_it_has_them(newsletter_with_list: Settings,
                                                                                store: Store) -> None:
    from .conftest import override_template

    settings = newsletter_with_list
    for name in ("welcome_email.txt.j2", "welcome_email.html.j2"):
        path = override_template(settings, name)
        path.write_text(path.read_text().replace("Thank you for subscribing", "Glad you are here, reader of"))
    client = app_client(settings, store)
    post_form(client, settings, NEW, name="Grace")
    client.post(local(confirm_link(sent_one_by_one(settings)[-1])))
    welcome = sent_one_by_one(settings)[-1]
    assert "Glad you are here, reader of" in welcome.get_body(("plain",)).get_content()
    html = welcome.get_body(("html",)).get_content()
    assert "Glad you are here, reader of" in html and "Welcome, Grace" in html
    assert 'style="' in html  # styles inlined, as in an issue


def test_the_limits_hold_against_a_flood_of_simultaneous_posts(newsletter_with_list: Settings, store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    settings = dataclasses.replace(newsletter_with_list, signup_per_address_per_day=2, signup_per_ip_per_hour=5)
    service = Signups(settings, store, settings.secret)
    started = service.form_token(time.time() - 10)
    posts = [Post(email=NEW, started=started, ip="203.0.113.9") for _ in range(12)]
    posts += [Post(email=f"reader{n}@example.net", started=started, ip="198.51.100.9") for n in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(service.request, posts))
    assert outcomes[:12].count(Outcome.CONFIRMATION_SENT) == 2
    assert outcomes[12:].count(Outcome.CONFIRMATION_SENT) == 5
    assert len(sent_one_by_one(settings)) == 7


def test_the_confirmation_goes_at_once_through_the_configured_provider(newsletter_with_list: Settings, store: Store,
                                                                      smtp_server) -> None:
    settings = dataclasses.replace(newsletter_with_list, provider="smtp", smtp_url=smtp_server.url)
    client = app_client(settings, store)
    post_form(client, settings, NEW)
    [(recipients, message)] = smtp_server.recorder.messages
    assert recipients == [NEW] and message["Subject"].startswith("Confirm")
    assert sent_one_by_one(settings) == []  # not through the outbox, nor queued for the scheduler


def test_a_provider_that_is_down_gets_the_same_answer_and_leaves_no_live_link(
        newsletter_with_list: Settings, store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.providers.smtp import SmtpProvider

    from .smtp_server import free_port

    settings = newsletter_with_list
    genuine = answer(post_form(app_client(settings, store), settings, "someone@example.net"))
    down = dataclasses.replace(settings, provider="smtp", smtp_url=f"smtp://127.0.0.1:{free_port()}")
    monkeypatch.setattr(SmtpProvider, "backoff_base", 0.01)
    caplog.set_level(logging.INFO)
    assert answer(post_form(app_client(down, store), down, NEW)) == genuine
    assert signup_rows(store) == 1  # the failed request counts against no limit
    assert "not sent" in caplog.text and NEW not in caplog.text
