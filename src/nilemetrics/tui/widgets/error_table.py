"""The payment-error table: sortable, the cursor following the newest row until moved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.reactive import reactive
from textual.widgets import DataTable

from nilemetrics.tui.model import ErrorRow
from nilemetrics.tui.widgets.ranked_list import fit


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """A column: its label, least width, share of spare room, cell text and sort key.

    ``full`` columns (the time, the error code, the amount) get the width of their
    longest value before any column grows: they are never cut while another
    column gets room.
    """

    key: str
    label: str
    min_width: int
    weight: int
    value: Callable[[ErrorRow], str]
    justify: str = "left"
    full: bool = False
    max_width: int = 40


def _local_time(row: ErrorRow) -> str:
    return row.at.astimezone().strftime("%H:%M:%S") if row.at else ""


# Display order: what a seller asks first (when, who, how much, why) comes first.
COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("time", "Time", 8, 0, _local_time, full=True),
    ColumnSpec("email", "Email", 14, 3, lambda r: r.email),
    ColumnSpec("amount", "Amount", 9, 0, lambda r: r.amount_text, "right", full=True),
    ColumnSpec("code", "Error", 10, 0, lambda r: r.error_code, full=True, max_width=32),
    ColumnSpec("message", "Message", 14, 4, lambda r: r.error_message),
    ColumnSpec("method", "Method", 8, 0, lambda r: r.payment_method),
    ColumnSpec("items", "Items", 16, 2, lambda r: r.items_text),
    ColumnSpec("phone", "Phone", 8, 0, lambda r: r.phone, full=True, max_width=20),
    ColumnSpec("ip", "IP", 8, 0, lambda r: r.ip_address, full=True, max_width=39),
    ColumnSpec("browser", "Browser", 20, 1, lambda r: r.browser),
)

#: Which columns stay when not all fit, most important first.
PRIORITY: tuple[str, ...] = ("time", "code", "amount", "email", "message", "method", "items",
                             "browser", "phone", "ip")

_SPEC = {spec.key: spec for spec in COLUMNS}


def _natural_width(spec: ColumnSpec, rows: Sequence[ErrorRow]) -> int:
    """The width a ``full`` column needs for its longest value (and its label)."""
    longest = max((cell_len(spec.value(row)) for row in rows), default=0)
    return min(max(spec.min_width, len(spec.label), longest), spec.max_width)


def column_widths(
    available: int, padding: int, rows: Sequence[ErrorRow] = ()
) -> dict[str, int]:
    """Widths of the columns that fit ``available`` cells, by key, filling the room.

    Columns are taken in :data:`PRIORITY` order while they fit (a ``full`` column
    at its natural width, the others at their least width); the rest are left
    out (the detail screen shows every field) rather than shown cut off. Spare
    room then goes to the columns with a weight.
    """
    chosen: dict[str, int] = {}
    used = 0
    for key in PRIORITY:
        spec = _SPEC[key]
        width = _natural_width(spec, rows) if spec.full else spec.min_width
        need = width + 2 * padding
        if chosen and used + need > available:
            continue  # a narrower, less important column may still fit
        chosen[key] = width
        used += need
    spare = available - used
    weights = {key: _SPEC[key].weight for key in chosen if _SPEC[key].weight}
    total_weight = sum(weights.values())
    if spare <= 0 or not total_weight:
        return chosen
    for key, weight in weights.items():
        chosen[key] += spare * weight // total_weight
    # Rounding leftovers go to the widest-growing column.
    heaviest = max(weights, key=lambda key: weights[key])
    chosen[heaviest] += available - used - sum(
        spare * weight // total_weight for weight in weights.values())
    return chosen


def _sort_value(key: str, row: ErrorRow) -> tuple[int, Any]:
    """A sort key putting rows without a value last."""
    if key == "time":
        return (0, row.at.timestamp()) if row.at else (1, 0.0)
    if key == "amount":
        return (0, row.amount) if row.amount is not None else (1, Decimal(0))
    text = _SPEC[key].value(row).casefold()
    return (0, text) if text else (1, "")


class ErrorTable(DataTable[Text]):
    """Payment errors; :meth:`show_rows` replaces the rows and keeps the cursor sensible.

    The cursor follows the newest row until the user moves it; then it stays on
    the row the user chose (moving back to the newest row follows again).
    """

    #: Column key the rows are sorted by, and whether largest / latest first.
    sort_key: reactive[str] = reactive("time", init=False)
    sort_descending: reactive[bool] = reactive(True, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_shown: list[ErrorRow] = []
        self.follow_newest = True
        self._received: list[ErrorRow] = []
        self._by_key: dict[str, ErrorRow] = {}
        self._widths: dict[str, int] = {}
        self._filter_note = ""
        # Rendered cells by row key: an update usually repeats most rows unchanged.
        self._cell_cache: dict[str, tuple[dict[str, object], list[Text]]] = {}

    @property
    def filter_note(self) -> str:
        """What the filter shows (empty without a filter), in the bottom border."""
        return self._filter_note

    @filter_note.setter
    def filter_note(self, note: str) -> None:
        self._filter_note = note
        self._update_subtitle()

    @property
    def sort_text(self) -> str:
        """The order shown, e.g. ``newest first`` or ``by Amount ↓``."""
        if self.sort_key == "time":
            return "newest first" if self.sort_descending else "oldest first"
        return f"by {_SPEC[self.sort_key].label} {'↓' if self.sort_descending else '↑'}"

    def _update_subtitle(self) -> None:
        hint = "Enter: details"
        if self.hidden_columns:
            hint = f"Enter: all fields · {self.hidden_columns} more columns when wider"
        self.border_subtitle = self._filter_note or hint

    def on_mount(self) -> None:
        """Lay out the columns for the current width."""
        self._layout_columns()

    def _on_resize(self, event: events.Resize) -> None:
        super()._on_resize(event)
        self._fit_columns()

    def watch_show_vertical_scrollbar(self, _shown: bool) -> None:
        """Rows that start or stop overflowing change the room the columns have."""
        # No resize event comes for it; refit once the scrollbar is laid out, so the
        # widths do not depend on whether the rows came before the first layout or after.
        self.call_after_refresh(self._fit_columns)

    def _fit_columns(self) -> None:
        if self._target_widths() != self._widths:
            self._layout_columns()

    def _target_widths(self) -> dict[str, int]:
        # The vertical scrollbar takes two cells when rows overflow.
        available = max(self.scrollable_content_region.width - 2, 0)
        return column_widths(available, self.cell_padding, self._received)

    @property
    def columns_shown(self) -> list[ColumnSpec]:
        """The columns that fit, in display order."""
        return [spec for spec in COLUMNS if spec.key in self._widths]

    def _layout_columns(self) -> None:
        self._widths = self._target_widths()
        self._cell_cache.clear()
        selected = self.selected_key
        self.clear(columns=True)
        for spec in self.columns_shown:
            arrow = ""
            if spec.key == self.sort_key and spec.key != "time":
                arrow = " ↓" if self.sort_descending else " ↑"
            label = Text(spec.label + arrow, justify=spec.justify)  # type: ignore[arg-type]
            self.add_column(label, width=self._widths[spec.key], key=spec.key)
        self._fill(selected, keep_offset=False)
        self._update_subtitle()

    @property
    def hidden_columns(self) -> int:
        """How many columns do not fit the current width."""
        return len(COLUMNS) - len(self._widths)

    @property
    def selected_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        if not self.rows_shown or not self.is_valid_row_index(self.cursor_row):
            return None
        return self.rows_shown[self.cursor_row].key

    @property
    def selected_row(self) -> ErrorRow | None:
        """The row under the cursor, if any."""
        key = self.selected_key
        return None if key is None else self._by_key.get(key)

    def _sorted(self, rows: list[ErrorRow]) -> list[ErrorRow]:
        if self.sort_key == "time" and self.sort_descending:
            return list(rows)  # the order rows come in: newest first
        key = self.sort_key
        present = [row for row in rows if _sort_value(key, row)[0] == 0]
        missing = [row for row in rows if _sort_value(key, row)[0] != 0]
        present.sort(key=lambda row: _sort_value(key, row)[1], reverse=self.sort_descending)
        return present + missing

    def _newest_key(self) -> str | None:
        dated = [row for row in self.rows_shown if row.at is not None]
        if not dated:
            return self.rows_shown[0].key if self.rows_shown else None
        return max(dated, key=lambda row: row.at.timestamp() if row.at else 0.0).key

    def show_rows(self, rows: list[ErrorRow]) -> None:
        """Replace the rows (newest first); sort them and put the cursor where it belongs."""
        self._received = list(rows)
        if self._target_widths() != self._widths:
            self._layout_columns()  # a longer error code or amount: make room for it
        ordered = self._sorted(rows)
        if [r.key for r in ordered] == [r.key for r in self.rows_shown] and all(
            new.raw == old.raw for new, old in zip(ordered, self.rows_shown, strict=True)
        ):
            return  # nothing changed: keep the table (and its scroll position) as it is
        self._replace(ordered)

    def _replace(self, ordered: list[ErrorRow]) -> None:
        selected = self.selected_key
        old_index = self.cursor_row
        old_scroll = self.scroll_y
        self.rows_shown = ordered
        self._by_key = {row.key: row for row in ordered}
        for key in [key for key in self._cell_cache if key not in self._by_key]:
            del self._cell_cache[key]
        self.clear()
        self._fill(selected, keep_offset=True, old_index=old_index, old_scroll=old_scroll)

    def watch_sort_key(self, _key: str) -> None:
        """Re-sort and show the order in the header."""
        self._resort()

    def watch_sort_descending(self, _descending: bool) -> None:
        """Re-sort and show the order in the header."""
        self._resort()

    def _resort(self) -> None:
        # A new order is a new view: start at its top (newest first follows the newest again).
        self.follow_newest = self.sort_key == "time" and self.sort_descending
        self.rows_shown = []
        self._by_key = {}
        self._layout_columns()
        self._replace(self._sorted(self._received))
        self.move_cursor(row=0, animate=False, scroll=False)
        self.call_after_refresh(self._restore_view, 0.0)

    def cycle_sort(self) -> None:
        """Sort by the next column shown (after the last, back to the time)."""
        keys = [spec.key for spec in self.columns_shown]
        index = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.sort_by(keys[(index + 1) % len(keys)] if keys else "time")

    def sort_by(self, key: str) -> None:
        """Sort by a column: amounts and times largest first, text A to Z; again reverses."""
        if key == self.sort_key:
            self.sort_descending = not self.sort_descending
            return
        self.set_reactive(ErrorTable.sort_descending, key in ("time", "amount"))
        self.sort_key = key

    def _cells(self, row: ErrorRow) -> list[Text]:
        cached = self._cell_cache.get(row.key)
        if cached is not None and cached[0] == row.raw:
            return cached[1]
        cells = self._render_cells(row)
        self._cell_cache[row.key] = (row.raw, cells)
        return cells

    def _render_cells(self, row: ErrorRow) -> list[Text]:
        return [
            Text(fit(spec.value(row), self._widths[spec.key]), no_wrap=True,
                 justify=spec.justify)  # type: ignore[arg-type]
            for spec in self.columns_shown
        ]

    def _fill(
        self,
        selected: str | None,
        *,
        keep_offset: bool,
        old_index: int = 0,
        old_scroll: float = 0.0,
    ) -> None:
        for row in self.rows_shown:
            self.add_row(*self._cells(row), key=row.key)
        if not self.rows_shown:
            return
        if self.follow_newest:
            selected, keep_offset = self._newest_key(), False
        index = 0
        if selected is not None and selected in self._by_key:
            index = next(i for i, row in enumerate(self.rows_shown) if row.key == selected)
        elif keep_offset:
            index = min(old_index, len(self.rows_shown) - 1)
        # Keep the selected row where it was on screen: shift the view as much as it moved.
        target_scroll = max(old_scroll + (index - old_index), 0) if keep_offset else 0
        self.move_cursor(row=index, animate=False, scroll=False)
        self.call_after_refresh(self._restore_view, target_scroll)

    def _restore_view(self, target_scroll: float) -> None:
        self.scroll_to(y=target_scroll, animate=False, immediate=True)
        self._scroll_cursor_into_view()

    # The user's own moves decide whether the cursor keeps following the newest row.

    def _user_moved(self) -> None:
        self.follow_newest = self.selected_key == self._newest_key()

    def action_cursor_up(self) -> None:
        """Move up; the cursor stays where the user put it."""
        super().action_cursor_up()
        self._user_moved()

    def action_cursor_down(self) -> None:
        """Move down; the cursor stays where the user put it."""
        super().action_cursor_down()
        self._user_moved()

    def action_page_up(self) -> None:
        """Page up; the cursor stays where the user put it."""
        super().action_page_up()
        self._user_moved()

    def action_page_down(self) -> None:
        """Page down; the cursor stays where the user put it."""
        super().action_page_down()
        self._user_moved()

    def action_scroll_top(self) -> None:
        """First row; the cursor stays where the user put it."""
        super().action_scroll_top()
        self._user_moved()

    def action_scroll_bottom(self) -> None:
        """Last row; the cursor stays where the user put it."""
        super().action_scroll_bottom()
        self._user_moved()

    async def _on_click(self, event: events.Click) -> None:
        await super()._on_click(event)
        self._user_moved()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a column header sorts by that column (again: the other way)."""
        event.stop()
        self.sort_by(str(event.column_key.value))
