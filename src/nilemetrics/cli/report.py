"""`nilemetrics report`: session analytics over a period, as Rich tables or JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from nilemetrics.cli.options import (
    DatabaseUrlOption,
    check_period,
    database_errors,
    open_database,
    out_console,
    point_in_time,
    utc_now,
)
from nilemetrics.server.reports import build_report


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
    return tables


def report(
    since: Annotated[
        str, typer.Option(help="Start of the period: a duration ago (24h, 7d) or an ISO time.")
    ] = "24h",
    until: Annotated[
        str | None,
        typer.Option(help="End of the period (default: now).", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Session analytics: time on page, funnel, abandonment, payment errors, retries.

    Sessions count when active in the period, checkouts when started in it,
    page visits and payment errors when they happened in it.

    Example: nilemetrics report --since 7d --json
    """
    now = utc_now()
    start = point_in_time(since, "--since", now)
    end = point_in_time(until, "--until", now) if until else now
    check_period(start, end)
    engine, _settings = open_database(database_url)
    with database_errors(engine), engine.connect() as conn, conn.begin():
        body = build_report(conn, start, end)
    if as_json:
        out_console.out(json.dumps(body, indent=2), highlight=False)
        return
    out_console.print(f"nilemetrics report {body['since']} → {body['until']}")
    for table in render(body):
        out_console.print(table)
