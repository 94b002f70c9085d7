"""The number keys that switch views, listed once (the app maps them to screens)."""

from __future__ import annotations

from textual.binding import Binding

#: Key, mode name, footer label, in key order.
VIEW_KEYS: tuple[tuple[str, str, str], ...] = (
    ("1", "live", "Live"),
    ("2", "history", "History"),
    ("3", "customer", "Customer"),
    ("4", "report", "Report"),
)


def view_bindings() -> list[Binding]:
    """Bindings for the number keys; screens list them first so the footer leads with them."""
    return [Binding(key, f"app.switch_mode({name!r})", label) for key, name, label in VIEW_KEYS]
