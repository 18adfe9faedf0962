"""Settings come from newsletter.toml and the environment, and mistakes name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import ConfigError, load_settings


def test_the_sample_settings_load(project: Path) -> None:
    settings = load_settings(project, environ={})
    assert settings.site_name == "Say What You Mean"
    assert settings.provider == "outbox"
    assert settings.output_path == project / "build"


def test_environment_overrides_the_file(project: Path) -> None:
    settings = load_settings(
        project,
        environ={"NEWSLETTER_BASE_URL": "https://news.example.org", "NEWSLETTER_BATCH_SIZE": "50", "NEWSLETTER_PROVIDER": "smtp"},
    )
    assert settings.base_url == "https://news.example.org"
    assert settings.batch_size == 50
    assert settings.provider == "smtp"


def test_unknown_key_is_named(project: Path) -> None:
    (project / "newsletter.toml").write_text('site_nmae = "Oops"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'site_nmae'"):
        load_settings(project, environ={})


def test_wrong_type_is_named(project: Path) -> None:
    (project / "newsletter.toml").write_text("site_name = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="'site_name' must be a string"):
        load_settings(project, environ={})
    (project / "newsletter.toml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"NEWSLETTER_BATCH_SIZE.*whole number"):
        load_settings(project, environ={"NEWSLETTER_BATCH_SIZE": "lots"})


def test_secrets_are_refused_in_the_file(project: Path) -> None:
    (project / "newsletter.toml").write_text('sendgrid_api_key = "SG.x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        load_settings(project, environ={})


def test_unknown_provider_is_refused(project: Path) -> None:
    with pytest.raises(ConfigError, match="'pigeon' is not one of outbox, smtp, sendgrid"):
        load_settings(project, environ={"NEWSLETTER_PROVIDER": "pigeon"})


def test_cli_reports_a_bad_setting_without_a_traceback(project: Path) -> None:
    (project / "newsletter.toml").write_text("batch_size = \"many\"\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 1
    assert "'batch_size' must be a whole number" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["news.example.org", "ftp://news.example.org", "https://", "/archive", "https://news.example.org/?a=1"])
def test_base_url_that_is_not_an_absolute_http_url_is_refused_with_its_line(project: Path, value: str) -> None:
    (project / "newsletter.toml").write_text(f'site_name = "S"\n\nbase_url = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"newsletter.toml:3: 'base_url' must"):
        load_settings(project, environ={})


def test_base_url_from_the_environment_names_the_variable(project: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable NEWSLETTER_BASE_URL: 'base_url' must be an absolute http"):
        load_settings(project, environ={"NEWSLETTER_BASE_URL": "news.example.org"})


@pytest.mark.parametrize(("url", "warned"), [
    ("http://news.example.org", True), ("http://203.0.113.5:8000", True), ("https://news.example.org", False),
    ("http://127.0.0.1:8000", False), ("http://localhost:8000", False), ("http://[::1]:8000/news", False),
])
def test_plain_http_on_a_public_host_is_a_warning(project: Path, url: str, warned: bool) -> None:
    settings = load_settings(project, environ={"NEWSLETTER_BASE_URL": url})
    assert bool(settings.warnings) is warned
    if warned:
        assert "NEWSLETTER_BASE_URL" in settings.warnings[0] and "HTTPS" in settings.warnings[0]


def test_cli_shows_the_http_warning_and_still_runs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "http://news.example.org")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 0, result.output
    assert "warning: environment variable NEWSLETTER_BASE_URL: 'base_url' is http://" in result.stderr


@pytest.mark.parametrize("value", ["not an address", "editor@", "Editor <editor>", "a@b.c, d@e.f", "Ed\\n <e@example.org>",
                                   "Ed <e@example.com>, other@example.net", "Jörg <jörg@example.com>"])
def test_sender_that_is_not_an_address_is_refused_with_its_line(project: Path, value: str) -> None:
    (project / "newsletter.toml").write_text(f'# comment\nsender = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"newsletter.toml:2: 'sender'"):
        load_settings(project, environ={})


@pytest.mark.parametrize("value", ["editor@example.org", "Say What <editor@example.org>", '"Ed, Jr." <ed@bücher.de>'])
def test_ordinary_senders_are_accepted(project: Path, value: str) -> None:
    assert load_settings(project, environ={"NEWSLETTER_SENDER": value}).sender == value


def test_a_sender_at_an_international_domain_goes_out_in_its_ascii_form(project: Path) -> None:
    settings = load_settings(project, environ={"NEWSLETTER_SENDER": "Ed <editor@bücher.example>"})
    assert settings.sender_address == "editor@xn--bcher-kva.example"
    assert settings.sender_header == "Ed <editor@xn--bcher-kva.example>"


@pytest.mark.parametrize(("value", "ok"), [(1, True), (1000, True), (1001, False), (5000, False), (0, False), (-3, False)])
def test_batch_size_must_be_between_1_and_1000(project: Path, value: int, ok: bool) -> None:
    (project / "newsletter.toml").write_text(f"batch_size = {value}\n", encoding="utf-8")
    if ok:
        assert load_settings(project, environ={}).batch_size == value
        return
    with pytest.raises(ConfigError, match=r"newsletter.toml:1: 'batch_size' must be"):
        load_settings(project, environ={})
    (project / "newsletter.toml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"NEWSLETTER_BATCH_SIZE: 'batch_size' must be"):
        load_settings(project, environ={"NEWSLETTER_BATCH_SIZE": str(value)})


def test_unknown_key_names_its_line(project: Path) -> None:
    (project / "newsletter.toml").write_text('site_name = "S"\n"site_nmae" = "Oops"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"newsletter.toml:2: unknown key 'site_nmae'"):
        load_settings(project, environ={})


def test_numbers_are_checked_by_their_real_type(project: Path) -> None:
    (project / "newsletter.toml").write_text("grace_hours = 1.5\nbatch_size = 2.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"newsletter.toml:2: 'batch_size' must be a whole number"):
        load_settings(project, environ={})
    (project / "newsletter.toml").write_text('grace_hours = "soon"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"newsletter.toml:1: 'grace_hours' must be a number"):
        load_settings(project, environ={})


def test_an_empty_postal_address_is_a_build_warning(project: Path) -> None:
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 0 and "postal_address" not in result.stderr
    (project / "newsletter.toml").write_text('sender = "ed@example.org"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 0
    assert "warning: 'postal_address' is empty" in result.stderr


@pytest.mark.parametrize("key", ["base_url", "sender", "site_name", "postal_address"])
def test_a_control_character_in_a_setting_is_refused(project: Path, key: str) -> None:
    good = {"base_url": "https://news.example.org", "sender": "ed@example.org", "site_name": "S", "postal_address": "1 Lane"}
    value = good[key] + "\r\nBcc: everyone@example.org"
    with pytest.raises(ConfigError, match=rf"NEWSLETTER_{key.upper()}: '{key}' contains the control character U\+000D"):
        load_settings(project, environ={f"NEWSLETTER_{key.upper()}": value})


def test_a_postal_address_may_span_lines(project: Path) -> None:
    (project / "newsletter.toml").write_text('postal_address = """1 Lane\nTown"""\n', encoding="utf-8")
    assert load_settings(project, environ={}).postal_address == "1 Lane\nTown"
    assert load_settings(project, environ={"NEWSLETTER_LEASE_SECONDS": "2.5"}).lease_seconds == 2.5
    for key in ("LEASE_SECONDS", "RETRY_AFTER", "RETRY_FOR_HOURS"):
        with pytest.raises(ConfigError, match=f"NEWSLETTER_{key}: '{key.lower()}' must be greater than 0"):
            load_settings(project, environ={f"NEWSLETTER_{key}": "0"})


@pytest.mark.parametrize(("key", "value"), [("LEASE_SECONDS", "inf"), ("RETRY_AFTER", "1e12"), ("RETRY_FOR_HOURS", "-inf")])
def test_a_number_too_large_for_any_time_is_refused_naming_the_variable(project: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"NEWSLETTER_{key}.*no larger than 10,000,000"):
        load_settings(project, environ={f"NEWSLETTER_{key}": value})
