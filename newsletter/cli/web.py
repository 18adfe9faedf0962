"""preview and serve: the editor's live preview and the public app."""

from __future__ import annotations

import click

from ..errors import NewsletterError
from .common import cli, open_store, run_build, settings


class PortInUse(NewsletterError):
    """The address to listen on is taken or not ours; str() says which and what to do."""


def _check_port(host: str, port: int) -> None:
    """PortInUse unless `host`:`port` can be listened on now (uvicorn would only log its own error)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"cannot listen on {host}:{port}: the port is in use; stop what is using it "
                            "(another preview or serve?) or pass --port with another number") from None
        raise PortInUse(f"cannot listen on {host}:{port} ({reason}); pass --host with an address of this machine "
                        "and --port with a number from 1024 to 65535") from None


@cli.command()
@click.option("--port", default=8001, show_default=True, help="Port on 127.0.0.1.")
@click.option("--no-open", is_flag=True, help="Do not open the browser.")
def preview(port: int, no_open: bool) -> None:
    """Preview every issue in the browser while you write.

    Each issue, drafts too, shows at desktop and phone (375 px) width, in
    light or dark, with its text part and web version. The preview builds
    into its own folder (.newsletter/preview/), so drafts are never published. Saving an essay or a template rebuilds what
    changed and the open page reloads by itself; a broken essay shows its
    error in the page.

    \b
    Examples:
      newsletter preview
      newsletter preview --port 8002 --no-open
    """
    import threading
    import webbrowser

    import uvicorn

    from ..web.preview import create_app

    config = settings()
    _check_port("127.0.0.1", port)
    report = run_build(config, drafts=True)
    url = f"http://127.0.0.1:{port}/"
    click.echo(f"Previewing at {url} (Ctrl-C to stop)")
    if not no_open:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(config, report), host="127.0.0.1", port=port, log_level="warning",
                timeout_graceful_shutdown=1)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the public app: the web archive and feed from build/, the signup
    form with double opt-in at /subscribe (and /confirm for its links),
    unsubscribe links (GET shows a button, POST unsubscribes; RFC 8058
    one-click) and SendGrid's signed Event Webhook at /webhooks/sendgrid.

    Put it behind your web server at the base_url setting (the README has a
    systemd unit and a Caddy block). Webhook calls are refused unless
    SENDGRID_WEBHOOK_PUBLIC_KEY is set.

    \b
    Examples:
      newsletter serve
      NEWSLETTER_BASE_URL=https://news.example.org newsletter serve --port 8000
    """
    import logging

    import uvicorn

    from ..tokens import load_secret
    from ..web.public import RedactTokens, create_app

    config = settings()
    secret = load_secret(config)
    _check_port(host, port)
    store = open_store(config)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    click.echo(f"Serving {config.site_name} on http://{host}:{port}/")
    uvicorn.run(create_app(config, store, secret), host=host, port=port, log_level="info")
