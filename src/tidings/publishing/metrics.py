"""Prometheus metrics: this process's worker counters, plus the queue as the database sees it."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tidings.publishing.health import EngineReport

LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class EngineMetrics:
    """One registry per app (not the global one), so several apps never share numbers."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.claimed = Counter("tidings_tasks_claimed", "Tasks claimed by this process", registry=r)
        self.published = Counter(
            "tidings_targets_published", "Targets this process published", registry=r
        )
        self.failed = Counter(
            "tidings_targets_failed", "Targets this process marked FAILED", registry=r
        )
        self.dispatch_lag = Histogram(
            "tidings_dispatch_lag_seconds",
            "From when a target was due to the start of its platform call",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.tasks_due = Gauge("tidings_tasks_due", "Tasks due and not yet claimed", registry=r)
        self.tasks_running = Gauge("tidings_tasks_running", "Tasks claimed by a worker", registry=r)
        self.oldest_overdue = Gauge(
            "tidings_oldest_overdue_seconds", "How long the oldest due task has waited", registry=r
        )
        self.heartbeat_age = Gauge(
            "tidings_worker_heartbeat_age_seconds",
            "Age of the freshest worker heartbeat",
            registry=r,
        )
        self.workers = Gauge("tidings_workers", "Workers with a fresh heartbeat", registry=r)
        self.targets = Gauge("tidings_targets", "Targets by publish status", ["status"], registry=r)

    def render(self, report: EngineReport) -> bytes:
        """The exposition text, with the database's view of the queue as of now."""
        self.tasks_due.set(report.tasks_due)
        self.tasks_running.set(report.tasks_running)
        self.oldest_overdue.set(report.oldest_overdue.total_seconds())
        age = report.heartbeat_age
        self.heartbeat_age.set(age.total_seconds() if age is not None else float("nan"))
        self.workers.set(report.fresh_workers)
        for status, count in report.targets.items():
            self.targets.labels(status=status).set(count)
        return generate_latest(self.registry)
