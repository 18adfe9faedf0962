"""One registry of providers: what config accepts, what get_provider makes, what recovery trusts."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import ConfigError, Settings, load_settings
from newsletter.providers import REGISTRY, ProviderKind, get_provider


class Pigeon:
    """A provider known only to the registry."""

    name = "pigeon"

    def __init__(self, settings: Settings):
        self.settings = settings


def test_every_registered_provider_loads_under_its_own_name(settings: Settings) -> None:
    assert set(REGISTRY) == {"outbox", "smtp", "sendgrid"}
    for name, kind in REGISTRY.items():
        assert kind.load().name == name  # type: ignore[attr-defined]  # load() gives the class; the registry types it loosely
    assert [name for name, kind in REGISTRY.items() if kind.idempotent] == ["outbox"]


def test_config_and_get_provider_accept_exactly_what_the_registry_holds(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="'pigeon' is not one of outbox, smtp, sendgrid"):
        load_settings(project, environ={"NEWSLETTER_PROVIDER": "pigeon"})
    monkeypatch.setitem(REGISTRY, "pigeon", ProviderKind("pigeon", f"{__name__}:Pigeon", idempotent=True, settles_each=True))
    chosen = load_settings(project, environ={"NEWSLETTER_PROVIDER": "pigeon"})
    assert isinstance(get_provider(chosen), Pigeon)
