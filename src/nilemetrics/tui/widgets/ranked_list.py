"""Identifiers with their counts, busiest first, fitted to the space available."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells with an ellipsis when it does not fit."""
    if width <= 0:
        return ""
    if text.isascii():  # the common case, and one cell per character: no measuring
        return text if len(text) <= width else text[: width - 1] + "…"
    if cell_len(text) <= width:
        return text
    out = Text(text, no_wrap=True)
    out.truncate(width, overflow="ellipsis")
    return out.plain


class RankedList(Widget):
    """``summer-sale   12`` lines; when rows do not fit, the last line says how many more."""

    items: reactive[tuple[tuple[str, int], ...]] = reactive(tuple, layout=False)
    #: False until the first numbers came: an empty list then means "not known yet".
    known: reactive[bool] = reactive(False, layout=False)

    def render(self) -> Text:
        """The lines that fit the widget's size."""
        width, height = self.size.width, max(self.size.height, 1)
        items = self.items
        if not items:
            return Text("none" if self.known else "", style="dim", no_wrap=True)
        shown = items if len(items) <= height else items[: height - 1]
        number_width = max(len(str(n)) for _, n in shown) if shown else 1
        lines = Text(no_wrap=True, overflow="ellipsis")
        for index, (name, count) in enumerate(shown):
            name_width = max(width - number_width - 1, 1)
            label = fit(name or "(none)", name_width)
            if index:
                lines.append("\n")
            lines.append(label.ljust(name_width))
            lines.append(" ")
            lines.append(str(count).rjust(number_width), style="bold")
        if len(shown) < len(items):
            rest = sum(n for _, n in items[len(shown):])
            more = f"+{len(items) - len(shown)} more ({rest})"
            if shown:
                lines.append("\n")
            lines.append(fit(more, width), style="dim")
        return lines
