"""Each recipient's copy, filled into a message prepared once, reads exactly as the email package's own build."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.messages import Issue, Recipient, build_message, personal_copy
from newsletter.personalize import UNSUBSCRIBE_PLACEHOLDER
from newsletter.store import Store

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
HOSTILE_NAMES = [
    "", "Ann O'Neil", "Smith, John", 'Say "hi"', "back\\slash", "Zoë Müller", "李小龍", "(comment) name",
    "<evil@example.org>", "other@example.org", "semi;colon", "=?utf-8?b?SGFja2Vk?=", "=?utf-8?q?a?= =?utf-8?q?b?=",
    "Line\r\nBcc: victim@example.org", "tab\there", "nul\x00byte", "x" * 300, " spaced  out ", "Ω" * 120,
]
ADDRESSES = ["reader@example.net", "Mixed.Case+tag@Example.NET", "reader@bücher.example"]


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def readable(message: EmailMessage) -> dict[str, object]:
    """What a mail program shows and acts on."""
    to = message["To"]
    return {
        "to": [(a.display_name, a.addr_spec) for a in to.addresses] if to is not None else None,
        **{name: str(message[name]) for name in ("From", "Subject", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id")},
        "bcc": message["Bcc"],
        "types": [part.get_content_type() for part in message.walk()],
        "text": message.get_body(("plain",)).get_content(),
        "html": message.get_body(("html",)).get_content(),
    }


def assert_valid_mime(data: bytes) -> None:
    lines = data.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines), "no line over SMTP's 998"
    assert b"\n" not in data.replace(b"\r\n", b""), "every line ends in CRLF"
    message = parse(data)
    for part in message.walk():
        assert not part.defects, part.defects
        if part["Content-Transfer-Encoding"] == "quoted-printable":
            body = str(part.get_payload(decode=False)).encode("ascii")
            assert max(len(line) for line in body.splitlines()) <= 76, "quoted-printable lines of at most 76 (RFC 2045)"


def issue(text: str | None = None, html: str | None = None) -> Issue:
    return Issue(slug="say-what-you-mean", subject="Say what you mean – on “plain” words",
                 html=html if html is not None else (GOLDEN / "2017-02-13-say-what-you-mean.email.html").read_text(encoding="utf-8"),
                 text=text if text is not None else (GOLDEN / "2017-02-13-say-what-you-mean.email.txt").read_text(encoding="utf-8"),
                 send_id=3, message_key="key-for-send-3")


def same_as_the_email_package(settings: Settings, the_issue: Issue, recipient: Recipient) -> EmailMessage | None:
    """The fast copy, parsed, once checked against the slow one; None when both refuse the recipient alike."""
    try:
        slow = build_message(settings, the_issue, recipient).as_bytes()
    except Exception as exc:  # noqa: BLE001 - then the fast way must refuse it the same way
        with pytest.raises(type(exc)):
            personal_copy(settings, the_issue, recipient)
        return None
    fast = personal_copy(settings, the_issue, recipient)
    assert_valid_mime(fast)
    assert readable(parse(fast)) == readable(parse(slow))
    return parse(fast)


@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_copy_reads_as_the_email_packages_own_build_for_any_name(settings: Settings, name: str, address: str) -> None:
    recipient = Recipient(address, name, "https://example.com/unsubscribe?token=17:say-what-you-mean.abcDEF_-123", 17, 41)
    copy = same_as_the_email_package(settings, issue(), recipient)
    if copy is not None:
        assert len(copy["To"].addresses) == 1, "a name never becomes a second address"


@pytest.mark.parametrize("title", ["=?utf-8?b?QmNjOiBldmlsQGV4YW1wbGUuY29t?=", "Ünïcode and =?x?q?y?= " + "long words " * 12])
def test_a_title_shaped_like_an_encoded_word_reads_as_written(settings: Settings, title: str) -> None:
    the_issue = dataclasses.replace(issue(), subject=title)
    copy = same_as_the_email_package(settings, the_issue, Recipient("reader@example.net", "", "https://example.com/u", 17, 41))
    assert copy is not None and copy["Subject"] == title  # not "Bcc: evil@example.com"


def test_the_unsubscribe_link_survives_every_line_break_position_in_both_parts(settings: Settings) -> None:
    text = f"Plain line.\nDésabonnez-vous : {UNSUBSCRIBE_PLACEHOLDER} \n{UNSUBSCRIBE_PLACEHOLDER}\n.dot first\nend"
    html = f'<p>é</p>\n<a href="{UNSUBSCRIBE_PLACEHOLDER}">Unsubscribe</a> — <b>{UNSUBSCRIBE_PLACEHOLDER}</b>\n'
    the_issue = issue(text, html)
    for extra in range(0, 160):  # every position of the soft line break within the link
        url = f"https://example.com/u?token={'x' * extra}=&a=b"
        copy = same_as_the_email_package(settings, the_issue, Recipient("r@example.net", "R", url, 1, 2))
        assert copy is not None
        text_part = copy.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert f"Désabonnez-vous : {url} \n{url}\n" in text_part
        assert f'href="{url.replace("&", "&amp;")}"' in copy.get_body(("html",)).get_content()


def test_a_link_that_is_not_plain_ascii_is_built_the_slow_way_and_still_right(settings: Settings) -> None:
    odd = dataclasses.replace(settings, base_url="https://bücher.example/news")
    same_as_the_email_package(odd, issue(), Recipient("r@example.net", "R", "https://bücher.example/news/unsubscribe?token=1:a.b", 1, 2))


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_outbox_and_smtp_copies_carry_list_id_and_unsubscribe_headers(newsletter_with_list: Settings, store: Store,
                                                                      smtp_server, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("queue", "say-what-you-mean", "--at", "now", "--yes").exit_code == 0
    assert run("scheduler", "--once").exit_code == 0
    files = sorted(newsletter_with_list.outbox_path.glob("send-1/*.eml"))
    host = newsletter_with_list.base_url.split("//")[1].split(":")[0].split("/")[0]
    outbox = [parse(path.read_bytes()) for path in files]
    assert outbox and all(m["List-Id"] and m["List-Id"].endswith(f".{host}>") for m in outbox)
    assert all(newsletter_with_list.site_name in m["List-Id"] for m in outbox)

    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url)
    assert run("queue", "happy-families-lets-talk-about-new-labour", "--at", "now", "--yes").exit_code == 0
    assert run("scheduler", "--once").exit_code == 0
    received = [message for _, message in smtp_server.recorder.messages]
    assert len(received) == len(files)
    for message in received:
        assert message["List-Id"] == outbox[0]["List-Id"]
        link = message["List-Unsubscribe"].strip("<>")
        assert link in message.get_body(("plain",)).get_content()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    message_ids = [m["Message-ID"] for m in outbox + received]
    assert len(set(message_ids)) == len(message_ids), "every copy has its own Message-ID"


def test_message_ids_differ_between_two_fresh_databases_with_the_same_secret(newsletter_with_list: Settings, store: Store,
                                                                              tmp_path: Path) -> None:
    from newsletter.providers.outbox import OutboxProvider
    from newsletter.scheduler import Scheduler
    from newsletter.sends import queue
    from newsletter.store import open_store
    from newsletter.store.csvio import import_csv
    from newsletter.store.schema import utcnow

    def message_ids(settings: Settings, the_store: Store) -> dict[str, str]:
        with the_store.begin() as conn:
            queue(conn, "say-what-you-mean", "Say what you mean", "<p>%%unsubscribe_url%%</p>", "%%unsubscribe_url%%\n", utcnow())
        Scheduler(the_store, settings, OutboxProvider(settings), settings.secret).run_once()
        return {p.name: parse(p.read_bytes())["Message-ID"] for p in settings.outbox_path.glob("send-*/*.eml")}

    first = message_ids(newsletter_with_list, store)
    other = dataclasses.replace(newsletter_with_list, database_url=f"sqlite:///{tmp_path / 'other.db'}",
                                outbox_dir=str(tmp_path / "other-outbox"))
    other_store = open_store(other)
    try:
        import_csv(other_store, other.root / "subscribers" / "sample.csv")
        second = message_ids(other, other_store)
    finally:
        other_store.dispose()
    assert first.keys() == second.keys() and first
    assert all(first[name] != second[name] for name in first), "the same delivery in another database is another message"
    assert len(set(first.values())) == len(first)
