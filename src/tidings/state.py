"""What the app lifespan creates and every request may use."""

from dataclasses import dataclass

from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.engine import Database


@dataclass
class AppState:
    settings: Settings
    db: Database
    box: SecretBox
