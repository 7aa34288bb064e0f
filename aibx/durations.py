"""How durations read, the same in the console, messages and reports: 2.5 -> "2.50 s", 90 -> "1m30s"."""

from __future__ import annotations


def format_seconds(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s"


def format_duration(seconds: float) -> str:
    """90 -> "1m30s", 1200 -> "20m00s", 2.5 -> "2.50 s" (as the console shows times)."""
    return format_seconds(seconds)
