"""Everything stored for one payment error: contact, items, the full error details."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from nilemetrics.tui.model import ErrorRow, item_name, price_text


def _fields(row: ErrorRow) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    raw = row.raw
    when = row.at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if row.at else "—"
    for label, value in (
        ("Time", when),
        ("Email", row.email or "—"),
        ("Phone", row.phone or "—"),
        ("Amount", row.amount_text or "—"),
        ("Payment method", row.payment_method or "—"),
        ("Error code", row.error_code or "—"),
        ("Message", row.error_message or "—"),
        ("Attempt", str(raw.get("attempt") or "—")),
        ("Checkout status", str(raw.get("checkout_status") or "—")),
        ("Session", str(raw.get("session_id") or "—")),
        ("IP address", row.ip_address or "—"),
        ("Browser", row.browser or "—"),
        ("User agent", row.user_agent or "—"),
    ):
        table.add_row(label, Text(value))
    return table


def _items(items: list[Any]) -> RenderableType:
    if not items:
        return Text("No items stored.", style="dim")
    table = Table(expand=True, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("Item", overflow="fold", ratio=3)
    table.add_column("Qty", justify="right")
    table.add_column("Price", justify="right")
    for item in items:
        data = item if isinstance(item, dict) else {}
        table.add_row(
            item_name(item) or json.dumps(item, ensure_ascii=False),
            str(data.get("quantity", data.get("qty", ""))),
            price_text(data.get("price")),
        )
    return table


def _details(details: Any) -> RenderableType:
    if details is None:
        return Text("No error details stored.", style="dim")
    text = json.dumps(details, indent=2, ensure_ascii=False, sort_keys=True)
    return Syntax(text, "json", word_wrap=True, background_color="default")


class ErrorDetailScreen(ModalScreen[None]):
    """A scrollable view of one error row; Escape, q or Enter closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "dismiss", "Close"),
    ]
    #: The arrow keys scroll at once. (Focused by Textual when the screen shows, not in
    #: on_mount: a screen dismissed before it mounted has no children to query.)
    AUTO_FOCUS = "#detail-scroll"

    def __init__(self, row: ErrorRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        """Fields, items and details, one after the other."""
        row = self.row
        with Vertical(id="detail-box") as box:
            box.border_title = f"Payment error · {row.email or 'anonymous'}"
            box.border_subtitle = "Esc closes · ↑↓ scroll"
            with VerticalScroll(id="detail-scroll"):
                yield Static(_fields(row), id="detail-fields")
                yield Static(Text("Items", style="bold underline"), classes="detail-heading")
                yield Static(_items(row.items), id="detail-items")
                yield Static(
                    Text("Error details", style="bold underline"), classes="detail-heading"
                )
                yield Static(Group(_details(row.raw.get("error_details"))), id="detail-json")


    async def action_dismiss(self, result: None = None) -> None:
        """Close the screen."""
        self.dismiss(result)
