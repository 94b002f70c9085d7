"""The payment-error table: newest first, selection kept by row when rows arrive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from nilemetrics.tui.model import ErrorRow
from nilemetrics.tui.widgets.ranked_list import fit


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """A column: its label, least width, share of spare room, and cell text."""

    key: str
    label: str
    min_width: int
    weight: int
    value: Callable[[ErrorRow], str]
    justify: str = "left"


def _local_time(row: ErrorRow) -> str:
    return row.at.astimezone().strftime("%H:%M:%S") if row.at else ""


# What a seller asks first (who, how much, why) comes first: at 80 columns
# those fit, the rest is a horizontal scroll away.
COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("time", "Time", 8, 0, _local_time),
    ColumnSpec("email", "Email", 18, 3, lambda r: r.email),
    ColumnSpec("amount", "Amount", 9, 0, lambda r: r.amount_text, "right"),
    ColumnSpec("code", "Error", 13, 1, lambda r: r.error_code),
    ColumnSpec("message", "Message", 16, 4, lambda r: r.error_message),
    ColumnSpec("method", "Method", 8, 0, lambda r: r.payment_method),
    ColumnSpec("items", "Items", 16, 2, lambda r: r.items_text),
    ColumnSpec("phone", "Phone", 15, 0, lambda r: r.phone),
    ColumnSpec("ip", "IP", 15, 0, lambda r: r.ip_address),
    ColumnSpec("browser", "Browser", 18, 1, lambda r: r.browser),
)


def column_widths(available: int, padding: int) -> list[int]:
    """Widths for the columns that fit ``available`` cells, in order, filling the room.

    Columns that do not fit at their least width are left out (the detail
    screen shows every field) rather than shown cut off at the edge.
    """
    base: list[int] = []
    used = 0
    for spec in COLUMNS:
        need = spec.min_width + 2 * padding
        if base and used + need > available:
            break
        base.append(spec.min_width)
        used += need
    specs = COLUMNS[: len(base)]
    spare = available - used
    total_weight = sum(spec.weight for spec in specs)
    if spare <= 0 or not total_weight:
        return base
    widths = [w + spare * spec.weight // total_weight for w, spec in zip(base, specs, strict=True)]
    # Rounding leftovers go to the widest-growing column.
    heaviest = max(range(len(specs)), key=lambda i: specs[i].weight)
    widths[heaviest] += available - used - sum(w - b for w, b in zip(widths, base, strict=True))
    return widths


class ErrorTable(DataTable[Text]):
    """Payment errors; :meth:`show_rows` replaces the rows and keeps the selected one."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.rows_shown: list[ErrorRow] = []
        self._by_key: dict[str, ErrorRow] = {}
        self._widths: list[int] = []
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
        if self._target_widths() != self._widths:
            self._layout_columns()

    def _target_widths(self) -> list[int]:
        # The vertical scrollbar takes two cells when rows overflow.
        return column_widths(max(self.scrollable_content_region.width - 2, 0), self.cell_padding)

    def _layout_columns(self) -> None:
        self._widths = self._target_widths()
        self._cell_cache.clear()
        selected = self.selected_key
        self.clear(columns=True)
        for spec, width in zip(COLUMNS, self._widths, strict=False):
            self.add_column(Text(spec.label, justify=spec.justify), width=width, key=spec.key)  # type: ignore[arg-type]
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

    def show_rows(self, rows: list[ErrorRow]) -> None:
        """Replace the rows (newest first); the selected row stays selected if still there."""
        if [r.key for r in rows] == [r.key for r in self.rows_shown] and all(
            new.raw == old.raw for new, old in zip(rows, self.rows_shown, strict=True)
        ):
            return  # nothing changed: keep the table (and its scroll position) as it is
        selected = self.selected_key
        old_index = self.cursor_row
        old_scroll = self.scroll_y
        self.rows_shown = list(rows)
        self._by_key = {row.key: row for row in rows}
        for key in [key for key in self._cell_cache if key not in self._by_key]:
            del self._cell_cache[key]
        self.clear()
        self._fill(selected, keep_offset=True, old_index=old_index, old_scroll=old_scroll)

    def _cells(self, row: ErrorRow) -> list[Text]:
        cached = self._cell_cache.get(row.key)
        if cached is not None and cached[0] == row.raw:
            return cached[1]
        cells = self._render_cells(row)
        self._cell_cache[row.key] = (row.raw, cells)
        return cells

    def _render_cells(self, row: ErrorRow) -> list[Text]:
        return [
            Text(fit(spec.value(row), width), no_wrap=True, justify=spec.justify)  # type: ignore[arg-type]
            for spec, width in zip(COLUMNS, self._widths, strict=False)
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
