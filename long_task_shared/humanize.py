"""Numbers for people, one format wherever progress is shown: the command-line client, `manage.py
op_status` and the admin. No imports, so that the server side can use it as it is."""


def duration(seconds: float | None) -> str:
    """`12s`, `3m05s`, `1h49m` (hours and minutes past an hour); `-` for unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def ago(seconds: float | None) -> str:
    """`12s ago`, `3m05s ago`, `1h49m ago` (a time in the past, as an age); `-` for unknown."""
    return "-" if seconds is None else f"{duration(max(seconds, 0))} ago"


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def count(number: int | float | None) -> str:
    """`1,234,567`; `-` for unknown."""
    return "-" if number is None else f"{round(number):,}"


def size(nbytes: int | None) -> str:
    """`812 B`, `4.2 kB`, `75.0 MB`, `2.1 GB` (powers of 1000, as transfer rates are given)."""
    if nbytes is None:
        return "-"
    if nbytes < 1000:
        return f"{nbytes} B"
    value, unit = nbytes / 1000, "kB"
    for bigger in ("MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"
