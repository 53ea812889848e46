"""Instants at the edges: parse ISO-8601 with an offset, print UTC with a `Z`."""

from datetime import UTC, datetime


def parse_iso_instant(text: str) -> datetime:
    """An aware UTC datetime from ISO-8601 text that carries an offset or `Z`."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        raise ValueError("no UTC offset (add Z or +hh:mm)")
    return to_utc(value)


def to_utc(value: datetime) -> datetime:
    """`value` in UTC; a ValueError (not OverflowError) when UTC would leave years 1..9999."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


def format_instant(value: datetime | None) -> str | None:
    """`2026-11-22T09:00:00Z` (with fractional seconds only when there are any)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utcnow() -> datetime:
    return datetime.now(UTC)
