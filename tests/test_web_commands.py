"""`newsletter serve` and `newsletter preview`: what they start, and the one line each
says when it cannot start."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from .conftest import run
from .smtp_server import free_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        yield other.getsockname()[1]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the command handed uvicorn, instead of serving it: the app, host and port."""
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:
        seen.update(options, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return seen


def test_serve_runs_the_public_app_on_the_host_and_port_given(project: Path, started: dict[str, Any]) -> None:
    assert run("build").exit_code == 0
    port = free_port()
    result = run("serve", "--port", str(port))
    assert result.exit_code == 0, result.output
    assert f"Serving Say What You Mean on http://127.0.0.1:{port}/" in result.output
    assert (started["host"], started["port"]) == ("127.0.0.1", port)
    page = TestClient(started["app"]).get("/")
    assert page.status_code == 200 and "Every issue" in page.text


def test_preview_builds_drafts_and_runs_on_loopback_without_opening_a_browser(project: Path, started: dict[str, Any],
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    port = free_port()
    result = run("preview", "--port", str(port), "--no-open")
    assert result.exit_code == 0, result.output
    assert f"Previewing at http://127.0.0.1:{port}/" in result.output
    assert (started["host"], started["port"]) == ("127.0.0.1", port) and not opened
    with TestClient(started["app"], base_url="http://127.0.0.1") as client:
        assert "Happy Families" in client.get("/").text


@pytest.mark.parametrize("command", ["serve", "preview"])
def test_a_port_in_use_is_one_line_saying_to_pick_another(project: Path, taken_port: int, started: dict[str, Any],
                                                          command: str) -> None:
    result = run(command, "--port", str(taken_port))
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{taken_port}: the port is in use" in result.output
    assert "pass --port with another number" in result.output and "Traceback" not in result.output
    assert not started, "nothing was started"


def test_an_address_not_of_this_machine_is_one_line_naming_it(project: Path, started: dict[str, Any]) -> None:
    result = run("serve", "--host", "192.0.2.1", "--port", str(free_port()))  # TEST-NET-1: never a local address
    assert result.exit_code == 1
    assert "cannot listen on 192.0.2.1:" in result.output and "pass --host with an address of this machine" in result.output
    assert not started


def test_serve_on_a_shared_database_without_a_secret_says_to_set_it(project: Path, started: dict[str, Any],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{project / 'elsewhere.db'}")
    result = run("serve", "--port", str(free_port()))
    assert result.exit_code == 1
    assert "NEWSLETTER_SECRET is not set" in result.output and "Traceback" not in result.output
    assert not started
