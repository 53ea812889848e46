"""What the app lifespan creates and every request may use."""

from collections.abc import Callable
from dataclasses import dataclass, field

from tidings.config import Settings
from tidings.crypto import SecretBox
from tidings.db.engine import Database
from tidings.fetch import FetchGate
from tidings.publishing.metrics import EngineMetrics


@dataclass
class AppState:
    settings: Settings
    db: Database
    box: SecretBox
    #: Bounds on requests that fetch supplied URLs (dry runs), shared by the whole process.
    fetch_gate: FetchGate
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    wakers: list[Callable[[], None]] = field(default_factory=list)

    def wake_workers(self) -> None:
        """Tell this process's worker that new work was just committed."""
        for wake in self.wakers:
            wake()
