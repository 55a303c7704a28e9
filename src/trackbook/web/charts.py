"""Charts drawn on the server as SVG: no script, readable without one."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from markupsafe import Markup

WIDTH, HEIGHT, BOTTOM = 600, 180, 20


def per_day(
    hourly: list[tuple[datetime, int]], *, today: date, days: int, timezone: str
) -> list[tuple[date, int]]:
    """Hourly UTC counts regrouped into the account's days, oldest first, zeros included."""
    zone = ZoneInfo(timezone)
    totals: Counter[date] = Counter()
    for hour, count in hourly:
        totals[hour.astimezone(zone).date()] += count
    first = today - timedelta(days=days - 1)
    return [(first + timedelta(days=n), totals[first + timedelta(days=n)]) for n in range(days)]


def bar_chart(series: list[tuple[date, int]], *, label: str) -> Markup:
    top = max((count for _, count in series), default=0) or 1
    slot = WIDTH / max(len(series), 1)
    plot = HEIGHT - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">',
        f'<line x1="0" y1="{plot}" x2="{WIDTH}" y2="{plot}" class="axis"/>',
    ]
    for index, (day, count) in enumerate(series):
        height = plot * count / top
        x = index * slot + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{plot - height:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}"><title>{day.isoformat()}: {count}</title></rect>'
        )
        if (len(series) - 1 - index) % 7 == 0:
            last = index == len(series) - 1
            anchor, at = ("end", x + slot * 0.7) if last else ("start", x)
            parts.append(
                f'<text x="{at:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}" class="tick">'
                f"{day.strftime('%b %d')}</text>"
            )
    parts.append(f'<text x="4" y="12" class="tick">{top}</text></svg>')
    return Markup("".join(parts))  # noqa: S704 - built from numbers, dates and escaped text
