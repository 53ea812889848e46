"""`TIDINGS_SMTP_URL`: what each form means, and what is refused (without printing the
password)."""

import pytest
from pydantic import ValidationError

from tidings.config import Settings
from tidings.mail import Mailer


def test_the_url_forms() -> None:
    plain = Mailer.from_url("smtp://mail.example.org?from=noreply@example.org")
    assert plain == Mailer(host="mail.example.org", port=25, sender="noreply@example.org")
    starttls = Mailer.from_url(
        "smtp+starttls://ann%40example.org:p%3Ass%2Fw@mail.example.org"
        "?from=Tidings%20%3Cnoreply@example.org%3E&timeout=5"
    )
    assert starttls == Mailer(
        host="mail.example.org",
        port=587,
        sender="Tidings <noreply@example.org>",
        username="ann@example.org",
        password="p:ss/w",
        start_tls=True,
        timeout=5.0,
    )
    tls = Mailer.from_url("smtps://u:p@mail.example.org:2465?from=n@example.org")
    assert (tls.port, tls.use_tls, tls.start_tls) == (2465, True, False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.org?from=n@example.org", "must start with smtp://"),
        ("smtp://?from=n@example.org", "names no host"),
        ("smtp://mail.example.org", "needs a sender"),
        ("smtp://mail.example.org?from=nobody", "needs a sender"),
        ("smtp://mail.example.org:x?from=n@example.org", "not a number"),
        ("smtp://mail.example.org?from=n@example.org&timeout=soon", "not a number"),
    ],
)
def test_bad_urls_are_refused_at_start_without_showing_them(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mailer.from_url(url)
    secret = url.replace("smtp://", "smtp://ann:hunter22@", 1)
    with pytest.raises(ValidationError) as refused:
        Settings(smtp_url=secret)
    assert "hunter22" not in str(refused.value)


def test_a_subject_stays_one_line() -> None:
    mailer = Mailer(host="h", port=25, sender="n@example.org")
    mail = mailer.message("a@example.org", "Join\r\nBcc: x@example.org Acme", "text")
    assert mail["Subject"] == "Join Bcc: x@example.org Acme"
    assert mail["Bcc"] is None
