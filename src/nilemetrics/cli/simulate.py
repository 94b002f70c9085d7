"""`nilemetrics simulate`: realistic shoppers against a local server, over HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from nilemetrics.cli.options import fail, out_console, seconds
from nilemetrics.demo.runner import DemoError, check_reachable
from nilemetrics.demo.shoppers import (
    MAX_DURATION,
    MAX_SHOPPERS,
    SimulationConfig,
    SimulationStats,
    check_loopback,
    simulate,
)


def summary_table(summary: dict[str, Any], title: str = "Simulation summary") -> RichTable:
    """The simulator's totals as a Rich table."""
    table = RichTable(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    labels = {
        "sessions": "sessions",
        "straySessions": "stray sessions (started, no page)",
        "pageVisits": "page visits",
        "heartbeats": "heartbeats",
        "checkouts": "checkouts",
        "paymentErrors": "payment errors",
        "payments": "successful payments",
        "abandonedCheckouts": "abandoned after errors",
        "requests": "HTTP requests",
        "failedRequests": "failed requests",
        "requestsPerSecond": "requests / s",
        "latencyP50Ms": "latency p50 (ms)",
        "latencyP95Ms": "latency p95 (ms)",
        "elapsedSeconds": "elapsed (s)",
    }
    for key, label in labels.items():
        value = summary[key]
        table.add_row(label, "–" if value is None else str(value))
    for code, n in summary["errorCodes"].items():
        table.add_row(f"  {code}", str(n))
    return table


def simulate_command(
    url: Annotated[
        str, typer.Option(help="Base URL of the server (loopback addresses only).")
    ] = "http://127.0.0.1:8000",
    shoppers: Annotated[
        int, typer.Option(help="Shoppers browsing at the same time.", min=1, max=MAX_SHOPPERS)
    ] = 50,
    duration: Annotated[str, typer.Option(help="How long to run, e.g. 60s or 5m.")] = "60s",
    error_rate: Annotated[
        float, typer.Option(help="Share of payment attempts that are declined.", min=0, max=1)
    ] = 0.1,
    seed: Annotated[
        int | None, typer.Option(help="Random seed, for a repeatable run.", show_default=False)
    ] = None,
    speed: Annotated[
        float,
        typer.Option(help="Time compression: 10 means think times and heartbeats 10× faster.",
                     min=0.01, max=1000),
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulate shoppers with the shop client's exact payloads; prints a summary.

    They browse, check out, pay, get declined (card_declined, insufficient_funds,
    ...), retry or give up, and leave; heartbeats every 30 s (divided by --speed).

    Example: nilemetrics simulate --url http://127.0.0.1:8000 --shoppers 50 --duration 2m
    """
    run_for = seconds(duration, "--duration")
    if not 0 < run_for <= MAX_DURATION:
        fail("--duration: must be longer than zero and at most 24h")
    try:
        base = check_loopback(url)
    except ValueError as exc:
        fail(f"--url: {exc}")
    try:
        check_reachable(base)
    except DemoError as exc:
        fail(str(exc))
    config = SimulationConfig(
        url=base, shoppers=shoppers, duration=run_for, error_rate=error_rate, seed=seed,
        speed=speed,
    )
    stats = SimulationStats()
    try:
        asyncio.run(simulate(config, stats=stats))
    except KeyboardInterrupt:
        out_console.print("interrupted: summary so far")
    summary = stats.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        out_console.print(summary_table(summary))
