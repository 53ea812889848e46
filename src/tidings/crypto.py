"""Encryption of secrets at rest (API key secrets, later platform tokens)."""

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from `TIDINGS_SECRET_KEY`.

    Changing the secret key makes stored secrets unreadable: keys must then be re-issued.
    """

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"tidings secret box v1"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, sealed: bytes) -> str | None:
        """The plaintext, or None when it was sealed under another key or tampered with."""
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            return None
