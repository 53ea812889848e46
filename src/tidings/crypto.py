"""Secrets at rest: encryption of those Tidings must read back (API key secrets, platform
tokens, platform app secrets), and the hash kept of random tokens it only has to recognise
(sign-in sessions, invitation and reset links, OAuth states)."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.config import split_keys


def token_hash(token: str) -> str:
    """What is stored of a random token: its hex SHA-256 (the token has enough random bits
    that a hash without salt or stretching cannot be reversed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"tidings secret box v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) under keys derived from `TIDINGS_SECRET_KEY`.

    The secret key is a key ring (`config.split_keys`: newest first): the newest key seals,
    every key opens, so a new key can be put first and the old ones kept until every sealed
    value has been re-sealed (`reseal`, run by `tidings secrets rotate`). A value sealed
    under no key of the ring cannot be opened: its key must then be re-issued.
    """

    def __init__(self, secret_key: str) -> None:
        keys = split_keys(secret_key)
        if not keys:
            raise ValueError("the secret key is empty")
        self._newest = _fernet(keys[0])
        self._ring = MultiFernet([_fernet(key) for key in keys])

    def seal(self, plaintext: str) -> bytes:
        return self._ring.encrypt(plaintext.encode())

    def open(self, sealed: bytes) -> str | None:
        """The plaintext, or None when it was sealed under no key of the ring or tampered with."""
        try:
            return self._ring.decrypt(sealed).decode()
        except InvalidToken:
            return None

    def reseal(self, sealed: bytes) -> bytes | None:
        """`sealed` sealed again under the newest key (its original time kept), or None if
        no key of the ring opens it."""
        try:
            return self._ring.rotate(sealed)
        except InvalidToken:
            return None

    def opens_with_newest(self, sealed: bytes) -> bool:
        """Whether the newest key alone opens `sealed` (so older keys may be dropped)."""
        try:
            self._newest.decrypt(sealed)
        except InvalidToken:
            return False
        return True
