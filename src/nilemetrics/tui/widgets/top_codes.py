"""Top error codes among the payment-error rows received (GoAccess-style panel)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from nilemetrics.tui.model import CodeCount


class TopCodes(Widget):
    """Code, count, share and last seen, most frequent first, as many as fit."""

    codes: reactive[tuple[CodeCount, ...]] = reactive(tuple, layout=False)

    def render(self) -> Table | Text:
        """A compact table, the last line saying how many codes did not fit."""
        if not self.codes:
            return Text("no payment errors", style="dim")
        room = max(self.size.height - 1, 1)  # one line is the header
        shown = self.codes if len(self.codes) <= room else self.codes[: room - 1]
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column("Code", ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column("Count", justify="right", no_wrap=True)
        table.add_column("Share", justify="right", no_wrap=True)
        table.add_column("Last", justify="right", no_wrap=True)
        table.add_row(*(Text(h, style="bold") for h in ("Code", "Count", "Share", "Last")))
        for code in shown:
            last = code.last_seen.astimezone().strftime("%H:%M") if code.last_seen else "—"
            table.add_row(code.code, str(code.count), f"{code.share * 100:.0f}%", last)
        if len(shown) < len(self.codes):
            rest = self.codes[len(shown):]
            table.add_row(Text(f"+{len(rest)} more ({sum(c.count for c in rest)})",
                               style="dim"), "", "", "")
        return table
