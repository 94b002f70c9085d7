"""`nilemetrics report`: session analytics over a period, as Rich tables or JSON."""

from __future__ import annotations

import json
from datetime import UTC, tzinfo
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.table import Table as RichTable
from rich.text import Text

from nilemetrics.cli.options import (
    DatabaseUrlOption,
    check_period,
    database_errors,
    fail,
    open_database,
    out_console,
    point_in_time,
    utc_now,
)
from nilemetrics.server.experiments import ExperimentError, Goal, experiment_report
from nilemetrics.server.heatmaps import clicks as clicks_report
from nilemetrics.server.heatmaps import heatmap as build_heatmap
from nilemetrics.server.reports import build_report


class HeatmapOf(StrEnum):
    """What ``--heatmap`` counts."""

    SESSIONS = "sessions"
    CONVERSIONS = "conversions"
    ERRORS = "errors"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _seconds(value: float) -> str:
    return f"{value:.1f}s"


def render(report: dict[str, Any]) -> list[RichTable]:
    """The report as Rich tables, in reading order."""
    tables: list[RichTable] = []
    pages = RichTable(title="Average time on page")
    for col in ("page type", "visits", "avg time"):
        pages.add_column(col, justify="left" if col == "page type" else "right")
    for row in report["timeOnPage"]["byPageType"]:
        pages.add_row(row["pageType"], str(row["visits"]), _seconds(row["avgSeconds"]))
    tables.append(pages)
    for key, title in (("byCategory", "category"), ("byOffer", "offer")):
        rows = report["timeOnPage"][key]
        if not rows:
            continue
        table = RichTable(title=f"Average time per {title}")
        for col in (title, "visits", "avg time"):
            table.add_column(col, justify="left" if col == title else "right")
        for row in rows:
            table.add_row(row["identifier"], str(row["visits"]), _seconds(row["avgSeconds"]))
        tables.append(table)
    funnel_table = RichTable(title="Conversion funnel")
    for col in ("step", "sessions", "drop-off", "drop-off rate", "conversion"):
        funnel_table.add_column(col, justify="left" if col == "step" else "right")
    for step in report["funnel"]:
        funnel_table.add_row(
            step["step"],
            str(step["sessions"]),
            "" if step["dropOff"] is None else str(step["dropOff"]),
            "" if step["dropOffRate"] is None else _pct(step["dropOffRate"]),
            _pct(step["conversion"]),
        )
    tables.append(funnel_table)
    abandon = RichTable(
        title="Abandonment points (last page of sessions that started a checkout and never paid)"
    )
    for col in ("page", "sessions", "share"):
        abandon.add_column(col, justify="left" if col == "page" else "right")
    for row in report["abandonment"]:
        page = row["pageType"] + (f":{row['pageIdentifier']}" if row["pageIdentifier"] else "")
        abandon.add_row(page, str(row["sessions"]), _pct(row["share"]))
    tables.append(abandon)
    errors = RichTable(title="Payment errors by code")
    for col in ("error code", "errors", "checkouts", "amount at stake", "recovered"):
        errors.add_column(col, justify="left" if col == "error code" else "right")
    for row in report["paymentErrors"]:
        errors.add_row(row["errorCode"], str(row["errors"]), str(row["checkouts"]),
                       row["amountAtStake"], row["amountRecovered"])
    tables.append(errors)
    retry = report["retries"]
    retry_table = RichTable(
        title=f"Retries: {retry['succeededAfterRetry']} of {retry['failedCheckouts']} failed "
        f"checkouts paid in the end ({_pct(retry['succeededAfterRetryRate'])})"
    )
    for col in ("failures", "checkouts", "paid after retrying", "share of failed"):
        retry_table.add_column(col, justify="right")
    for row in retry["byFailures"]:
        retry_table.add_row(str(row["failures"]), str(row["checkouts"]), str(row["succeeded"]),
                            _pct(row["shareOfFailedCheckouts"]))
    tables.append(retry_table)
    pay = report["paymentSuccess"]
    success = RichTable(title="Payment success")
    success.add_column("measure")
    success.add_column("value", justify="right")
    success.add_row("checkouts started", str(pay["checkouts"]))
    success.add_row("checkouts with a payment outcome", str(pay["checkoutsWithOutcome"]))
    success.add_row("paid", str(pay["paid"]))
    success.add_row("success rate (per checkout)", _pct(pay["successRate"]))
    success.add_row("payment attempts", str(pay["paymentAttempts"]))
    success.add_row("success rate (per attempt)", _pct(pay["attemptSuccessRate"]))
    tables.append(success)
    custom = RichTable(title="Custom events")
    for col in ("event", "events", "sessions"):
        custom.add_column(col, justify="left" if col == "event" else "right")
    for row in report["customEvents"]:
        custom.add_row(row["name"], str(row["events"]), str(row["sessions"]))
    tables.append(custom)
    return tables


def _signed_pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}"


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None or high is None:
        return "–"
    if signed:
        return f"{low * 100:+.1f}…{high * 100:+.1f}"
    return f"{low * 100:.1f}–{high * 100:.1f}%"


def _p_value(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def render_experiment(body: dict[str, Any]) -> RichTable:
    """One experiment's variants as a Rich table (the title names experiment and goal)."""
    confidence = f"{body['confidence'] * 100:.0f}%"
    table = RichTable(
        title=f"Experiment {body['experiment']}: goal {body['goal']}, control "
        f"{body['control']}"
    )
    for col in ("variant", "visitors", "conv.", "rate", f"{confidence} CI",
                "vs control", f"{confidence} CI (pts)", "p-value"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in body["variants"]:
        name = row["variant"] + (" (control)" if row["control"] else "")
        table.add_row(
            name, str(row["visitors"]), str(row["conversions"]), _pct(row["rate"]),
            _interval(row["rateLow"], row["rateHigh"]),
            "" if row["control"] else _signed_pct(row["difference"]),
            "" if row["control"] else _interval(row["differenceLow"], row["differenceHigh"],
                                                signed=True),
            "" if row["control"] else _p_value(row["pValue"]),
        )
    return table


def experiment_notes(body: dict[str, Any]) -> list[str]:
    """Warnings under the table: a sample-ratio mismatch, visitors in several variants."""
    notes = []
    srm = body["sampleRatio"]
    if srm["mismatch"]:
        shares = ", ".join(f"{row['variant']} {row['visitors']}" for row in body["variants"])
        notes.append(
            f"[bold red]warning: sample ratio mismatch[/] (chi-square p = "
            f"{_p_value(srm['pValue'])}): visitors per variant are {shares}, not an even "
            "split. The assignment or its tracking is broken; do not trust the comparison."
        )
    several = body["visitorsInSeveralVariants"]
    if several:
        notes.append(f"{several} visitors were assigned to more than one variant (storage "
                     "cleared?); each counts in the first one.")
    return notes


#: Background colours from few to many (Rich styles), for the heatmap and the click grid.
HEAT_SCALE = ("on grey15", "on dark_blue", "on blue3", "on dark_green", "on green3",
              "on yellow3", "on dark_orange", "on red3")


def _heat_style(count: int, most: int) -> str:
    if not count or not most:
        return HEAT_SCALE[0]
    step = 1 + (count * (len(HEAT_SCALE) - 2)) // most
    return HEAT_SCALE[min(step, len(HEAT_SCALE) - 1)]


def _cell(count: int, width: int) -> str:
    text = "·" if not count else str(count) if count < 1000 else f"{count // 1000}k"
    return text.rjust(width) if len(text) <= width else "+" * width


def render_grid(
    title: str, rows: list[list[int]], row_names: list[str], column_names: list[str],
    width: int,
) -> RichTable:
    """Counts as a grid of coloured cells (darker: fewer, red: the most)."""
    most = max((n for row in rows for n in row), default=0)
    table = RichTable(title=title, box=None, padding=(0, 0), show_edge=False)
    table.add_column("", justify="right", no_wrap=True)
    for name in column_names:
        table.add_column(name.rjust(width), justify="right", no_wrap=True)
    for name, row in zip(row_names, rows, strict=True):
        table.add_row(f"{name} ", *(Text(_cell(n, width), style=_heat_style(n, most))
                                    for n in row))
    return table


def render_heatmap(body: dict[str, Any], figure: str) -> RichTable:
    """One figure of the heatmap: weekdays down, hours across."""
    return render_grid(
        f"{figure.capitalize()} by weekday and hour ({body['timezone']}), "
        f"{body['totals'][figure]} in all",
        body["grids"][figure], body["weekdays"], [f"{h:02d}" for h in range(24)], 3,
    )


def render_clicks(body: dict[str, Any]) -> list[RichTable]:
    """The most clicked elements, and where on the screen the clicks were."""
    top = RichTable(title=f"Clicks on {body['page']}: {body['clicks']} in all")
    for col in ("element", "clicks", "share"):
        top.add_column(col, justify="left" if col == "element" else "right")
    for row in body["elements"]:
        top.add_row(row["path"], str(row["clicks"]), _pct(row["share"]))
    if body["otherElements"]:
        top.add_row(f"… {body['otherElements']} more elements", "", "")
    size = body["gridSize"]
    density = render_grid(
        f"Where on the screen (a {size} x {size} grid over the viewport, top left first)",
        body["grid"], [f"{y * 100 // size}%" for y in range(size)],
        [f"{x * 100 // size}%" for x in range(size)], 4,
    )
    return [top, density]


def report(
    since: Annotated[
        str, typer.Option(help="Start of the period: a duration ago (24h, 7d) or an ISO time.")
    ] = "24h",
    until: Annotated[
        str | None,
        typer.Option(help="End of the period (default: now).", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    experiment: Annotated[
        str | None,
        typer.Option(help="Report this A/B experiment instead: per variant visitors, "
                     "conversions, rate, difference to control, p-value.", show_default=False),
    ] = None,
    goal: Annotated[
        str, typer.Option(help="With --experiment: what converts: paid, checkout or event:NAME.")
    ] = "paid",
    control: Annotated[
        str | None,
        typer.Option(help="With --experiment: the control variant (default: the one named "
                     "control, else the first assigned).", show_default=False),
    ] = None,
    heatmap: Annotated[
        bool, typer.Option("--heatmap", help="Print an hour-of-day x weekday grid instead.")
    ] = False,
    of: Annotated[
        HeatmapOf, typer.Option(help="With --heatmap: what it counts.")
    ] = HeatmapOf.SESSIONS,
    tz: Annotated[
        str, typer.Option(help="With --heatmap: the time zone of the hours (IANA name).")
    ] = "UTC",
    clicks_page: Annotated[
        str | None,
        typer.Option("--clicks", help="Print the clicks on this page (a path such as "
                     "/product/tv-55, or a page type) instead: top elements, density grid.",
                     show_default=False, metavar="PAGE"),
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Session analytics: time on page, funnel, abandonment, payment errors, retries.

    Sessions count when active in the period, checkouts when started in it,
    page visits and payment errors when they happened in it.

    Example: nilemetrics report --since 7d --json
    Example: nilemetrics report --experiment checkout-button --goal paid --since 30d
    Example: nilemetrics report --heatmap --of conversions --since 28d --tz Europe/Berlin
    Example: nilemetrics report --clicks /checkout --since 7d
    """
    now = utc_now()
    start = point_in_time(since, "--since", now)
    end = point_in_time(until, "--until", now) if until else now
    check_period(start, end)
    if not heatmap and (of is not HeatmapOf.SESSIONS or tz != "UTC"):
        fail("--of and --tz need --heatmap")
    if heatmap or clicks_page is not None:
        if experiment is not None or (heatmap and clicks_page is not None):
            fail("--experiment, --heatmap and --clicks are separate reports: give one")
        zone: tzinfo = UTC
        if heatmap:
            try:
                zone = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                fail(f"--tz {tz!r}: not a time zone name (such as UTC or Europe/Berlin)")
        engine, _settings = open_database(database_url)
        with database_errors(engine), engine.connect() as conn, conn.begin():
            if heatmap:
                grids = build_heatmap(conn, start, end, zone, tz)
            else:
                assert clicks_page is not None
                grids = clicks_report(conn, clicks_page, start, end)
        if as_json:
            out_console.out(json.dumps(grids, indent=2), highlight=False)
            return
        out_console.print(f"nilemetrics report {grids['since']} → {grids['until']}")
        for table in [render_heatmap(grids, of.value)] if heatmap else render_clicks(grids):
            out_console.print(table)
        return
    if experiment is None and (goal != "paid" or control is not None):
        fail("--goal and --control need --experiment NAME")
    parsed_goal: Goal | None = None
    if experiment is not None:
        try:
            parsed_goal = Goal.parse(goal)
        except ExperimentError as exc:
            fail(str(exc))
    engine, _settings = open_database(database_url)
    if experiment is not None and parsed_goal is not None:
        try:
            with database_errors(engine), engine.connect() as conn, conn.begin():
                result = experiment_report(conn, experiment, parsed_goal, start, end, control)
        except ExperimentError as exc:
            fail(str(exc))
        if as_json:
            out_console.out(json.dumps(result, indent=2), highlight=False)
            return
        out_console.print(f"nilemetrics report {result['since']} → {result['until']}")
        out_console.print(render_experiment(result))
        for note in experiment_notes(result):
            out_console.print(note, soft_wrap=True)
        return
    with database_errors(engine), engine.connect() as conn, conn.begin():
        body = build_report(conn, start, end)
    if as_json:
        out_console.out(json.dumps(body, indent=2), highlight=False)
        return
    out_console.print(f"nilemetrics report {body['since']} → {body['until']}")
    for table in render(body):
        out_console.print(table)
