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
    with pytest.raises(ConfigError, match="NEWSLETTER_BATCH_SIZE.*whole number"):
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


def test_retry_and_lease_settings_must_be_positive(project: Path) -> None:
    assert load_settings(project, environ={"NEWSLETTER_LEASE_SECONDS": "2.5"}).lease_seconds == 2.5
    for key in ("LEASE_SECONDS", "RETRY_AFTER", "RETRY_FOR_HOURS"):
        with pytest.raises(ConfigError, match=f"NEWSLETTER_{key}: '{key.lower()}' must be greater than 0"):
            load_settings(project, environ={f"NEWSLETTER_{key}": "0"})
