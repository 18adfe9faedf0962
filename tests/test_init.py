"""`newsletter init` starts a newsletter anywhere: it builds, imports, queues and sends
with the packaged templates alone, and a template of its own replaces only that part."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import SECRET_ENV, load_settings
from newsletter.render import PACKAGED_TEMPLATES
from newsletter.scaffold import create_newsletter

from .conftest import override_template


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder far from this repository, made the working folder, with a clean environment."""
    for name in list(os.environ):
        if name.startswith(("NEWSLETTER_", "SENDGRID_")):
            monkeypatch.delenv(name)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def eml_files(root: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted((root / "outbox").glob("send-*/*.eml"))]


def test_init_writes_a_newsletter_that_explains_every_setting(empty: Path) -> None:
    result = run("init", "news", "--name", "Allotment Notes")
    assert result.exit_code == 0, result.output
    root = empty / "news"
    text = (root / "newsletter.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text)["site_name"] == "Allotment Notes"
    settings = load_settings(root, environ={})
    for key in (k for k in settings.__dataclass_fields__ if k not in ("root", "warnings") and k not in SECRET_ENV):
        assert f"{key} = " in text, key
        line = next(n for n, line in enumerate(text.splitlines()) if line.lstrip("# ").startswith(f"{key} = "))
        assert text.splitlines()[line - 1].startswith("# "), f"{key} has no comment above it"
    assert [p.name for p in (root / "issues").glob("*.md")] and (root / "subscribers" / "sample.csv").is_file()
    ignored = (root / ".gitignore").read_text(encoding="utf-8").split()
    assert {"/build/", "/outbox/", "/.newsletter/"} <= set(ignored)
    assert not (root / "templates").exists()


def test_init_refuses_to_overwrite_and_writes_nothing(empty: Path) -> None:
    (empty / "issues").mkdir()
    (empty / ".gitignore").write_text("mine\n", encoding="utf-8")
    result = run("init")
    assert result.exit_code == 1
    assert ".gitignore already exists; init never overwrites" in result.output
    assert "Traceback" not in result.output
    assert (empty / ".gitignore").read_text(encoding="utf-8") == "mine\n"
    assert not (empty / "newsletter.toml").exists() and not list((empty / "issues").iterdir())
    assert run("init", "news").exit_code == 0
    again = run("init", "news")
    assert again.exit_code == 1 and "newsletter.toml already exists" in again.output


def test_init_then_build_import_queue_and_send_through_cli_runner(empty: Path) -> None:
    assert run("init", "news", "--name", "Allotment Notes").exit_code == 0
    os.chdir(empty / "news")
    built = run("build")
    assert built.exit_code == 0, built.output
    slug = next((empty / "news" / "issues").glob("*.md")).stem
    assert "Welcome to Allotment Notes" in (empty / "news" / "build" / slug / "email.html").read_text(encoding="utf-8")
    assert run("subscribers", "import", "subscribers/sample.csv").exit_code == 0
    queued = run("queue", "welcome", "--at", "now", "--yes")
    assert queued.exit_code == 0, queued.output
    sent = run("scheduler", "--once")
    assert sent.exit_code == 0, sent.output
    [message] = eml_files(empty / "news")
    assert message["To"] == "A Reader <reader@example.com>"
    assert message["Subject"] == "Welcome to Allotment Notes"
    assert "Edit this file" in message.get_body(("plain",)).get_content()


def test_init_then_every_step_in_real_processes(empty: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)

    def newsletter(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done

    newsletter("init", "news", cwd=empty)
    root = empty / "news"
    newsletter("build", cwd=root)
    newsletter("subscribers", "import", "subscribers/sample.csv", cwd=root)
    newsletter("queue", "welcome", "--at", "now", "--yes", cwd=root)
    done = newsletter("scheduler", "--once", cwd=root)
    assert "Sent 1 message(s)" in done.stdout
    assert [m["To"] for m in eml_files(root)] == ["A Reader <reader@example.com>"]


def test_a_template_of_its_own_replaces_only_that_part(empty: Path) -> None:
    made = create_newsletter(empty / "news", "Allotment Notes")
    settings = load_settings(made.root, environ={})
    os.chdir(made.root)
    assert run("build").exit_code == 0
    out = made.root / "build" / made.essay.stem
    before = {name: (out / name).read_text(encoding="utf-8") for name in ("email.html", "email.txt", "index.html")}
    own = override_template(settings, "email.txt.j2")
    own.write_text(own.read_text(encoding="utf-8").replace("Read this issue on the web:", "Read it online:"), encoding="utf-8")
    assert run("build").exit_code == 0
    after = {name: (out / name).read_text(encoding="utf-8") for name in before}
    assert after["email.txt"] == before["email.txt"].replace("Read this issue on the web:", "Read it online:")
    assert after["email.txt"] != before["email.txt"]
    assert after["email.html"] == before["email.html"] and after["index.html"] == before["index.html"]
    assert "Read this issue on the web:" in (PACKAGED_TEMPLATES / "email.txt.j2").read_text(encoding="utf-8")


def test_every_setting_in_a_new_newsletter_toml_is_explained() -> None:
    import dataclasses

    from newsletter.config import Settings
    from newsletter.scaffold import settings_file

    text = settings_file("My Newsletter")
    for item in dataclasses.fields(Settings):
        if f"{item.name} =" in text:
            assert f"# {item.name.replace('_', ' ').capitalize()}.\n" not in text, f"{item.name} has no explanation"
