"""An issue the store cannot record is refused with its file and line at build and queue,
the same on SQLite and PostgreSQL: never a database error, and nothing queued."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.essays import SLUG_MAX, TITLE_MAX
from newsletter.store import Store
from newsletter.store.fields import column_length
from newsletter.store.schema import sends
from newsletter.store.sends import SendError, queue, summaries

from .conftest import write_essay


def test_the_essay_limits_are_the_send_columns() -> None:
    assert (column_length(sends.c.issue_slug), column_length(sends.c.subject)) == (SLUG_MAX, TITLE_MAX)


@pytest.mark.parametrize(("front", "words"), [
    (f"title: {'T' * (TITLE_MAX + 1)}\ndate: 2017-05-01", "title is 501 characters long"),
    ('title: "Nul\\0here"\ndate: 2017-05-01', "U+0000"),
    (f"title: Fine\ndate: 2017-05-01\nslug: {'s' * (SLUG_MAX + 1)}", "slug is 201 characters long"),
], ids=["long-title", "nul-title", "long-slug"])
def test_queue_refuses_an_issue_the_store_cannot_record(store_settings: Settings, store: Store, front: str, words: str) -> None:
    path = write_essay(store_settings, "2017-05-01-odd", front, "Body.")
    result = CliRunner().invoke(cli, ["queue", "2017-05-01-odd", "--at", "now", "--yes", "--force"])
    assert result.exit_code == 1, result.output
    assert f"{path}:" in result.output and words in result.output and "Traceback" not in result.output
    with store.engine.connect() as conn:
        assert summaries(conn) == []


@pytest.mark.parametrize(("slug", "subject", "html", "words"), [
    ("s" * (SLUG_MAX + 1), "Fine", "<p>x</p>", "slug is 201 characters long"),
    ("fine", "T" * (TITLE_MAX + 1), "<p>x</p>", "title is 501 characters long"),
    ("fine", "Fine", "<p>x\x00</p>", "NUL"),
])
def test_the_store_refuses_what_it_cannot_record_before_the_database_sees_it(
        store: Store, slug: str, subject: str, html: str, words: str) -> None:
    with store.begin() as conn, pytest.raises(SendError, match=words):
        queue(conn, slug, subject, html, "x", dt.datetime(2030, 1, 1))
    with store.engine.connect() as conn:
        assert summaries(conn) == []
