from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC: every timestamp is stored in UTC and shown in Asia/Shanghai."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
