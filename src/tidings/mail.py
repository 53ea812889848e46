"""Sending mail (invitations, password reset links) through the SMTP server named by
`TIDINGS_SMTP_URL`, with aiosmtplib.

The URL says everything: `smtp://[user:password@]host[:port]?from=Tidings <noreply@x.org>`.
`smtp://` speaks STARTTLS when the server offers it (port 25 by default), `smtp+starttls://`
insists on it (587), and `smtps://` is TLS from the first byte (465). A user name or password
with `@`, `:` or `/` in it is percent-encoded. `timeout=` (seconds, default 30) bounds each
delivery.

Mail is sent after the transaction that justifies it has committed (a background task of
the response), never while a database transaction waits on the network.
"""

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

log = logging.getLogger("tidings.mail")

_SCHEMES = {"smtp": (25, None), "smtp+starttls": (587, True), "smtps": (465, False)}


@dataclass(frozen=True)
class Mailer:
    """Where and how mail is sent, parsed once from `TIDINGS_SMTP_URL`."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    #: True: STARTTLS or fail; None: when the server offers it.
    start_tls: bool | None = None
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> "Mailer":
        """The mailer an SMTP URL describes, or a ValueError saying what is wrong with it."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(
                f"TIDINGS_SMTP_URL must start with {', '.join(s + '://' for s in _SCHEMES)}"
            )
        if not parts.hostname:
            raise ValueError("TIDINGS_SMTP_URL names no host")
        query = parse_qs(parts.query)
        sender = (query.get("from") or [""])[0].strip()
        if not parseaddr(sender)[1] or "@" not in parseaddr(sender)[1]:
            raise ValueError(
                "TIDINGS_SMTP_URL needs a sender: ?from=noreply@example.com "
                "(or ?from=Tidings%20%3Cnoreply@example.com%3E)"
            )
        try:
            timeout = float((query.get("timeout") or ["30"])[0])
            port = parts.port
        except ValueError:
            raise ValueError(
                "TIDINGS_SMTP_URL has a port or timeout that is not a number"
            ) from None
        default_port, start_tls = _SCHEMES[scheme]
        return cls(
            host=parts.hostname,
            port=port or default_port,
            sender=sender,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=scheme == "smtps",
            start_tls=start_tls,
            timeout=timeout,
        )

    def message(self, to: str, subject: str, text: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = to
        # A header cannot hold a line break (a workspace's name might): one line of words.
        mail["Subject"] = " ".join(subject.split())
        mail.set_content(text)
        return mail

    async def send(self, mail: EmailMessage) -> None:
        """Deliver one message (raises aiosmtplib's errors)."""
        await aiosmtplib.send(
            mail,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            start_tls=self.start_tls,
            timeout=self.timeout,
        )

    async def deliver(self, mail: EmailMessage) -> None:
        """Send, after the response: a failure is logged (the link can be made again), since
        nobody is waiting for the answer any more."""
        try:
            await self.send(mail)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error("mail to %s not delivered: %s", mail["To"], exc)


def mailer_for(smtp_url: str | None) -> Mailer | None:
    """The configured mailer; None when no SMTP server is configured (links are shown)."""
    return Mailer.from_url(smtp_url) if smtp_url else None
