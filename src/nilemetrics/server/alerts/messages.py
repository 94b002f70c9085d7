"""What a notification says: the rule, the value, the threshold, the window, the top codes.

Plain text, the same for every Apprise service (Slack, Discord, e-mail, JSON...).
No contact data (email, phone, IP) unless the rule has ``include_contacts = true``;
then the contacts are added when sending (see :func:`contacts_section`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from nilemetrics.durations import format_duration
from nilemetrics.server.alerts.rules import Rule, format_value

Kind = Literal["firing", "repeat", "resolved", "test"]

#: Apprise notify types per kind (services colour or tag them).
NOTIFY_TYPES: dict[str, str] = {
    "firing": "failure", "repeat": "warning", "resolved": "success", "test": "info",
}

_TITLES = {
    "firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED", "test": "TEST",
}


@dataclass(frozen=True, slots=True)
class Message:
    """One notification's title and text, and its Apprise type."""

    title: str
    body: str
    notify_type: str


def shown(metric: str, value: float | None) -> str:
    """A metric's value as a person reads it: ``7``, ``0.5 (50%)``, ``no value``."""
    if value is None:
        return "no value (no payment outcome in the window)" \
            if metric == "payment_success_rate" else "no value"
    if metric == "payment_success_rate":
        return f"{format_value(value)} ({value * 100:.0f}%)"
    return format_value(value)


def threshold_text(rule: Rule) -> str:
    """``above 5`` or ``below 0.8 (80%)``."""
    return f"{rule.direction} {shown(rule.metric, rule.threshold)}"


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _codes(codes: list[tuple[str, int]], codes_window: float) -> str:
    span = format_duration(codes_window)
    if not codes:
        return f"Top error codes (last {span}): none"
    listed = ", ".join(f"{code} {count}" for code, count in codes)
    return f"Top error codes (last {span}): {listed}"


def compose(
    rule: Rule,
    kind: Kind,
    *,
    value: float | None,
    now: datetime,
    since: datetime | None,
    episode: int,
    codes: list[tuple[str, int]] | None,
    codes_window: float,
) -> Message:
    """The notification for ``kind`` of ``rule`` at ``now``.

    ``since``: when the episode started firing (firing, repeat, resolved).
    ``codes``: the top error codes of the last ``codes_window`` seconds (None: not known).
    """
    title = f"[{_TITLES[kind]}] {rule.name}"
    lines: list[str] = []
    current = f"{rule.metric} is {shown(rule.metric, value)} {rule.window_text()}"
    if kind == "resolved":
        lines.append(f"{current}: no longer {threshold_text(rule)}.")
        if since is not None:
            lasted = format_duration(max((now - since).total_seconds(), 0.0)) or "0s"
            lines.append(f"Fired from {_time(since)} to {_time(now)} ({lasted}).")
    elif kind == "test":
        lines.append("This is a test notification from `nilemetrics alerts test`.")
        lines.append(f"The rule fires when {rule.metric} {rule.window_text()} is "
                     f"{threshold_text(rule)}.")
        lines.append(f"{current}." if value is not None else
                     "The current value was not read (alerts test --database-url reads it).")
    else:
        lines.append(f"{current}: {threshold_text(rule)}.")
        if since is not None:
            held = f" (it held for {format_duration(rule.hold)} first)" if rule.hold else ""
            lines.append(f"Firing since {_time(since)}{held}.")
        if kind == "repeat":
            lines.append(f"Still firing at {_time(now)}; reminded every "
                         f"{format_duration(rule.repeat or 0)}.")
    if codes is not None:
        lines.append(_codes(codes, codes_window))
    reference = f'Rule "{rule.name}"' + (f", episode {episode}" if episode else "")
    lines.append(f"{reference} - nilemetrics")
    return Message(title=title, body="\n".join(lines), notify_type=NOTIFY_TYPES[kind])


def contacts_section(contacts: list[dict[str, Any]]) -> str:
    """The contact lines a rule with ``include_contacts = true`` adds when sending."""
    if not contacts:
        return "Contacts of the latest failed payments: none stored."
    lines = ["Contacts of the latest failed payments (include_contacts = true):"]
    for item in contacts:
        parts = [str(item.get("code") or "(no code)")]
        parts += [str(item[key]) for key in ("email", "phone", "ip") if item.get(key)]
        if len(parts) == 1:
            parts.append("no contact data")
        lines.append("- " + " | ".join(parts))
    return "\n".join(lines)
