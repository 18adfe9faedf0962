"""Double opt-in signup: the form's request, the confirmation link, the welcome.

What it guarantees, and where:
- The form reveals nothing. `request()` answers every post the same way
  (the web layer shows one "check your inbox" page); only the email, which
  goes to the address's owner, differs.
- Nothing is subscribed before it is confirmed. A new address becomes
  PENDING (never sent an issue: the scheduler freezes only ACTIVE); a
  suppressed one stays suppressed until `confirm()`, the subscriber's own
  explicit request, the only path from the form that may reactivate it.
- A link opened by a mail scanner changes nothing: `check()` only reads;
  `confirm()` (a POST) writes.
- A confirmation link is signed for this purpose alone (tokens.CONFIRM_SALT),
  expires after `confirm_hours`, and is dead once a newer one was sent or the
  address was suppressed after it was asked for.
- Bots and floods: a honeypot field, a minimum time between showing the
  form and posting it, a limit per address per day and per network per hour.
  A refused post creates nothing and sends nothing, and is logged with a
  digest of the address, never the address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, select

from .config import Settings
from .errors import NewsletterError
from .messages import Issue, Recipient
from .inliner import inline_css
from .render import template_environment
from .store import Store
from .store import signups as requests
from .store import subscribers as ops
from .store.fields import ControlCharacter, InvalidEmail, InvalidField, clean_name, fit
from .store.schema import ACTIVE, SUPPRESSED, sends, utcnow
from .store.signups import SignupKind
from .tokens import CONFIRM_SALT, FORM_SALT, BadToken, Signer, fallback_secrets, unsubscribe_url

log = logging.getLogger("newsletter.signup")

FORM_TOKEN_LIFETIME = 24 * 3600.0  # a form token older than this is asked for again: no endless replay


class Outcome(StrEnum):
    """What became of a post; the client is never told (see the module docstring)."""

    CONFIRMATION_SENT = "confirmation sent"
    NOTICE_SENT = "already-subscribed notice sent"
    HONEYPOT = "refused: honeypot filled"
    TOO_FAST = "refused: posted too soon after the form was shown"
    ADDRESS_LIMIT = "refused: too many emails to this address today"
    NETWORK_LIMIT = "refused: too many signups from this network this hour"
    NOT_SENT = "the email could not be sent"


class FormProblem(NewsletterError):
    """The post cannot be taken as it is, whoever the address belongs to: str() says what to do."""


class FormExpired(FormProblem):
    """The form carries no valid start time (shown without script, or long ago): show it again."""


class LinkProblem(NewsletterError):
    """A confirmation link that does not work: forged, expired, or replaced; str() tells the reader."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # forged, expired, replaced: for the log


@dataclass(frozen=True)
class Post:
    """What a signup form sent."""

    email: str
    name: str = ""
    started: str = ""  # the signed time the form was shown (form_token)
    honeypot: str = ""  # a field people never see, and bots fill in
    form: str = "subscribe page"  # where the form was
    ip: str = ""


@dataclass(frozen=True)
class Confirmation:
    """A link that works: whose, and whether it was already used."""

    email: str
    site_name: str
    confirmed: bool


def truncate_ip(host: str) -> str:
    """The network, not the reader: /24 of an IPv4 address, /48 of IPv6. Kept in the
    consent record and counted by the per-network limit."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def deliver(settings: Settings, issue: Issue, recipient: Recipient) -> None:
    """Send one message at once through the configured provider, outside any send.

    The only place signup touches a provider, through its public interface;
    DeliveryFailed or OutcomeUnknown as the provider raises them."""
    from .providers import Collected, DeliveryFailed, OutcomeUnknown, get_provider
    from .store.schema import DeliveryStatus

    outcomes = Collected()
    get_provider(settings).send(issue, [recipient], outcomes)
    for status, reason in outcomes.settled.values():
        if status == DeliveryStatus.IN_DOUBT:
            raise OutcomeUnknown(reason)
        if status != DeliveryStatus.SENT:
            raise DeliveryFailed(reason or str(status))


class Signups:
    """The signup service one public app uses. Its methods block (database, provider):
    call them from a thread, never inside an async handler."""

    def __init__(self, settings: Settings, store: Store, secret: str):
        self.settings = settings
        self.store = store
        fallbacks = fallback_secrets(settings)
        self._links = Signer(secret, fallbacks, salt=CONFIRM_SALT)
        self._forms = Signer(secret, fallbacks, salt=FORM_SALT)
        self._unsubscribe = Signer(secret, fallbacks)
        self._digest_key = hashlib.sha256(b"newsletter.log-digest" + secret.encode()).digest()
        self.env = template_environment(settings)

    # -- the form ---------------------------------------------------------
    def form_token(self, now: float | None = None) -> str:
        """The signed time a form was shown; posted back in the field "started"."""
        return self._forms.sign(str(int((time.time() if now is None else now) * 1000)))

    def _form_age(self, token: str, now: float) -> float:
        try:
            shown = int(self._forms.unsign(token)) / 1000
        except (BadToken, ValueError):
            raise FormExpired("Please press Subscribe once more.") from None
        if now - shown > FORM_TOKEN_LIFETIME:
            raise FormExpired("This form was open a long time; please press Subscribe once more.")
        return now - shown

    def digest(self, address: str) -> str:
        """How logs name an address: a keyed digest, the same for the same address, never the address."""
        key = address.strip().lower()
        return hmac.new(self._digest_key, key.encode("utf-8", "replace"), "sha256").hexdigest()[:12]

    def request(self, post: Post, now: float | None = None, screened: bool = True) -> Outcome:
        """Take a signup post. Returns what happened, for the log and the tests only.

        FormProblem for a post no one could accept (an address we cannot send to,
        a form without its start time): it says nothing about who is subscribed.
        `screened=False` is for the editor, who is no bot: no honeypot, timing or limits."""
        clock = time.time() if now is None else now
        network = truncate_ip(post.ip)
        if screened and post.honeypot:
            return self._refused(Outcome.HONEYPOT, post, network)
        age = self._form_age(post.started, clock) if screened else float("inf")
        try:
            email, _ = ops.email_key(post.email)
            clean_name(post.name)
        except InvalidEmail as exc:  # about the text typed, never about who is subscribed
            raise FormProblem(f"That is not an email address we can send to ({exc}); please check it.") from None
        except ControlCharacter:
            raise FormProblem("The name holds an invisible control character that cannot be kept; "
                              "please type it again, or leave it out.") from None
        except InvalidField:
            raise FormProblem("Please shorten the name, or leave it out.") from None
        if age < self.settings.signup_min_seconds:
            return self._refused(Outcome.TOO_FAST, post, network)

        at = dt.datetime.fromtimestamp(clock, dt.UTC).replace(tzinfo=None)
        form = fit(post.form or "subscribe page")
        with self.store.begin() as conn:
            requests.serialise(conn, network, ops.email_key(email)[1])
            if screened and requests.count_from(conn, network, at - dt.timedelta(hours=1)) >= self.settings.signup_per_ip_per_hour:
                return self._refused(Outcome.NETWORK_LIMIT, post, network)
            subscriber = ops.find(conn, email)
            if screened and subscriber is not None and requests.count_for_subscriber(
                    conn, subscriber.id, at - dt.timedelta(days=1)) >= self.settings.signup_per_address_per_day:
                return self._refused(Outcome.ADDRESS_LIMIT, post, network)
            if subscriber is None:
                subscriber = ops.add_pending(conn, email, post.name, f"signup form ({form})")
            # An active address gets a notice, not a new subscription: the page cannot tell the
            # poster "you are already subscribed" (that would reveal who is), so without an email
            # a reader who forgot they subscribed would wait for one that never comes. The notice
            # goes only to the address's owner, has no link that changes anything, and counts
            # against the same daily limit, so it cannot be used to flood anyone.
            kind = SignupKind.NOTICE if subscriber.status == ACTIVE else SignupKind.CONFIRM
            signup = requests.record(conn, subscriber.id, kind, form, network, at)
        if not self._send(subscriber, signup):
            return Outcome.NOT_SENT
        log.info("signup from %s: %s to address %s", network, kind, self.digest(email))
        return Outcome.CONFIRMATION_SENT if kind == SignupKind.CONFIRM else Outcome.NOTICE_SENT

    def _send(self, subscriber: ops.Subscriber, signup: requests.Signup) -> bool:
        """Send the signup's email (a confirmation, or a notice to an active address); False, logged, if it failed."""
        try:
            if signup.kind == SignupKind.CONFIRM:
                deliver(self.settings, *self._confirmation_email(subscriber, signup))
            else:
                deliver(self.settings, *self._notice_email(subscriber))
        except Exception as exc:  # noqa: BLE001 - the reader sees the same page; the editor sees the log
            from .providers import DeliveryFailed

            if isinstance(exc, DeliveryFailed):  # surely not sent: the request counts for nothing
                with self.store.begin() as conn:
                    requests.forget(conn, signup.id)
            log.error("signup email to address %s not sent: %s", self.digest(subscriber.email), exc.__class__.__name__)
            return False
        return True

    def _refused(self, outcome: Outcome, post: Post, network: str) -> Outcome:
        log.warning("signup %s (address %s, network %s)", outcome, self.digest(post.email), network)
        return outcome

    # -- the link ---------------------------------------------------------
    def link(self, signup: requests.Signup) -> str:
        token = self._links.sign(f"{signup.id}:{int(signup.requested_at.replace(tzinfo=dt.UTC).timestamp())}")
        return f"{self.settings.site_url}/confirm?token={token}"

    def _signup_for(self, conn: Connection, token: str, now: dt.datetime) -> tuple[requests.Signup, ops.Subscriber]:
        forged = LinkProblem("forged", "This confirmation link is incomplete or not one of ours. Please use the "
                             "link from the email itself, or sign up again.")
        try:
            number, _, stamp = self._links.unsign(token).partition(":")
        except BadToken:
            raise forged from None
        if not number.isdigit() or not stamp.isdigit():
            raise forged
        signup = requests.get(conn, int(number))
        # The time in the token must match the row: a database made anew reuses ids.
        if (signup is None or signup.kind != SignupKind.CONFIRM
                or int(signup.requested_at.replace(tzinfo=dt.UTC).timestamp()) != int(stamp)):
            raise forged
        subscriber = ops.get(conn, signup.subscriber_id)
        if subscriber is None:
            raise forged
        if signup.confirmed_at is not None:
            return signup, subscriber
        if now - signup.requested_at > dt.timedelta(hours=self.settings.confirm_hours):
            raise LinkProblem("expired", "This confirmation link has expired. Please sign up again and use the "
                              "link in the new email.")
        replaced = LinkProblem("replaced", "A newer confirmation email was sent, and only its link works now. "
                               "Please use the newest email, or sign up again.")
        if requests.newest_confirmation(conn, subscriber.id) != signup.id:
            raise replaced
        # Suppressed after this link was asked for (a bounce, a complaint, the editor's remove):
        # the newer word wins, and only a new signup may undo it.
        changed = subscriber.status_changed_at
        if subscriber.status in SUPPRESSED and changed is not None and changed > signup.requested_at:
            raise replaced
        return signup, subscriber

    def check(self, token: str, now: dt.datetime | None = None) -> Confirmation:
        """What a confirmation link would do; changes nothing (mail scanners open links)."""
        with self.store.read() as conn:
            signup, subscriber = self._signup_for(conn, token, now or utcnow())
        return Confirmation(email=subscriber.email, site_name=self.settings.site_name,
                            confirmed=signup.confirmed_at is not None)

    def confirm(self, token: str, ip: str, now: dt.datetime | None = None) -> Confirmation:
        """The subscriber pressed the button: activate them and record their consent, then
        send the welcome. A link already used changes nothing and sends nothing."""
        at = now or utcnow()
        with self.store.begin() as conn:
            signup, subscriber = self._signup_for(conn, token, at)
            first = signup.confirmed_at is None and requests.mark_confirmed(conn, signup.id, truncate_ip(ip), at)
            if first:
                # The subscriber's own explicit request: the one path from the form that may
                # reactivate a suppression (see store/subscribers.py).
                subscriber = ops.activate(conn, subscriber.id, fit(f"confirmed signup ({signup.form})"))
        if first:
            log.info("signup confirmed by address %s", self.digest(subscriber.email))
            self._welcome(subscriber)
        return Confirmation(email=subscriber.email, site_name=self.settings.site_name, confirmed=True)

    # -- the emails -------------------------------------------------------
    def _render(self, template: str, subject: str, slug: str, **values: object) -> Issue:
        from .personalize import UNSUBSCRIBE_PLACEHOLDER

        context = {"subject": subject, "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER, **values}
        html = inline_css(self.env.get_template(f"{template}.html.j2").render(context))
        text = self.env.get_template(f"{template}.txt.j2").render(context)
        return Issue(slug=slug, subject=subject, html=html, text=text)

    def _recipient(self, subscriber: ops.Subscriber, slug: str) -> Recipient:
        return Recipient(email=subscriber.email, name=subscriber.name, subscriber_id=subscriber.id,
                         unsubscribe_url=unsubscribe_url(self.settings, self._unsubscribe.token(subscriber.id, slug)))

    def _confirmation_email(self, subscriber: ops.Subscriber, signup: requests.Signup) -> tuple[Issue, Recipient]:
        hours = self.settings.confirm_hours
        issue = self._render("confirm_email", f"Confirm your subscription to {self.settings.site_name}", "confirm",
                             confirm_url=self.link(signup), hours=f"{hours:g}")
        return issue, self._recipient(subscriber, "confirm")

    def _notice_email(self, subscriber: ops.Subscriber) -> tuple[Issue, Recipient]:
        issue = self._render("notice_email", f"You are already subscribed to {self.settings.site_name}", "notice")
        return issue, self._recipient(subscriber, "notice")

    def _welcome(self, subscriber: ops.Subscriber) -> None:
        """The welcome email, then (a setting) the newest issue the list was sent. A failure is
        logged, never shown: the subscription stands either way."""
        try:
            welcome = self._render("welcome_email", f"Welcome to {self.settings.site_name}", "welcome",
                                   name=subscriber.name)
            deliver(self.settings, welcome, self._recipient(subscriber, "welcome"))
            if self.settings.welcome_newest_issue:
                newest = self._newest_sent_issue()
                if newest is not None:
                    deliver(self.settings, newest, self._recipient(subscriber, newest.slug))
        except Exception as exc:  # noqa: BLE001
            log.error("welcome email to address %s not sent: %s", self.digest(subscriber.email), exc.__class__.__name__)

    def _newest_sent_issue(self) -> Issue | None:
        """The newest issue the list received, as it was frozen for that send: never an essay
        not yet published."""
        with self.store.read() as conn:
            row = conn.execute(select(sends.c.issue_slug, sends.c.subject, sends.c.html, sends.c.text)
                               .where(sends.c.status == "sent")
                               .order_by(sends.c.finished_at.desc(), sends.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return Issue(slug=row.issue_slug, subject=row.subject, html=row.html, text=row.text)


def signup_for_editor(settings: Settings, store: Store, secret: str, address: str, name: str = "") -> Outcome:
    """`subscribers add EMAIL --confirm`: a confirmation email instead of a direct add.
    FormProblem for an address or name that cannot be stored."""
    post = Post(email=address, name=name, form="subscribers add --confirm", ip="")
    return Signups(settings, store, secret).request(post, screened=False)


__all__ = ["Confirmation", "FormExpired", "FormProblem", "LinkProblem", "Outcome", "Post", "Signups",
           "deliver", "signup_for_editor", "truncate_ip"]
