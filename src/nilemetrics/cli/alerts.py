"""`nilemetrics alerts`: check a rules file, send a test notification, list rule states."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table as RichTable

from nilemetrics.cli.options import (
    build_settings,
    database_errors,
    fail,
    open_database,
    out_console,
    utc_now,
)
from nilemetrics.config import read_stored_token
from nilemetrics.durations import format_duration
from nilemetrics.server.alerts.rules import AlertsConfig, AlertsFileError, Rule, load_rules

app = typer.Typer(
    name="alerts",
    help="Alert rules: check a rules file, send a test notification, list rule states.",
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path,
    typer.Argument(help="The TOML rules file (as given to serve --alerts).", show_default=False),
]


def _load(path: Path) -> AlertsConfig:
    try:
        return load_rules(path)
    except AlertsFileError as exc:
        fail(str(exc))


@app.command("check")
def check(file: FileArgument) -> None:
    """Validate a rules file: every rule, notifier and field (one error line, exit 1).

    Example: nilemetrics alerts check /etc/nilemetrics/alerts.toml
    """
    config = _load(file)
    out_console.print(
        f"{file}: {len(config.rules)} rule(s), {len(config.notifiers)} notifier(s): ok",
        soft_wrap=True,
    )
    for rule in config.rules:
        out_console.print(f'  rule "{rule.name}": {rule.describe()}', soft_wrap=True,
                          markup=False)
    for notifier in config.notifiers.values():
        out_console.print(f'  notify "{notifier.name}": {", ".join(_masked(notifier.urls))}',
                          soft_wrap=True, markup=False)


def _masked(urls: tuple[str, ...]) -> list[str]:
    """The URLs with their secrets masked (Apprise's privacy form), without the defaults."""
    import apprise

    shown = []
    for url in urls:
        plugin = apprise.Apprise.instantiate(url)
        text = (
            plugin.url(privacy=True)  # type: ignore[no-untyped-call]
            if plugin is not None else url.split("://", 1)[0]
        )
        shown.append(str(text).split("?", 1)[0])
    return shown


@app.command("test")
def test(
    file: FileArgument,
    rule: Annotated[str, typer.Option("--rule", help="The rule whose notifiers to test.")],
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Also read the rule's current value and top error codes from this database "
            "(default: not read).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send a test notification to every notifier of one rule, now (not through the outbox).

    Example: nilemetrics alerts test alerts.toml --rule "payment errors"
    """
    from nilemetrics.server.alerts.delivery import send_apprise
    from nilemetrics.server.alerts.messages import compose

    config = _load(file)
    chosen = config.rule(rule)
    if chosen is None:
        names = ", ".join(f'"{r.name}"' for r in config.rules)
        fail(f'--rule: no rule named "{rule}" in {file} (its rules: {names})')
    now = utc_now()
    value, codes = _current(chosen, database_url, now) if database_url else (None, None)
    message = compose(chosen, "test", value=value, now=now, since=None, episode=0,
                      codes=codes, codes_window=chosen.window or 3600.0)
    failures = []
    for name in chosen.notify:
        notifier = config.notifiers[name]
        for url, shown in zip(notifier.urls, _masked(notifier.urls), strict=True):
            problem = send_apprise(url, message)
            if problem is None:
                out_console.print(f'sent a test notification to "{name}" ({shown})',
                                  soft_wrap=True, markup=False)
            else:
                failures.append(f'"{name}" ({shown}): {problem}')
    if failures:
        fail(f"could not send to {failures[0]}"
             + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))


def _current(rule: Rule, database_url: str, now: datetime
             ) -> tuple[float | None, list[tuple[str, int]]]:
    from nilemetrics.server.alerts.values import codes_window, metric_value, top_error_codes

    engine, settings = open_database(database_url)
    with database_errors(engine), engine.connect() as conn:
        value = metric_value(conn, rule, now, settings.live_window)
        codes = top_error_codes(conn, now - timedelta(seconds=codes_window(rule)))
    return value, codes


@app.command("list")
def list_rules(
    url: Annotated[
        str, typer.Option(envvar="NILEMETRICS_URL", help="Address of the nilemetrics server.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="NILEMETRICS_DASHBOARD_TOKEN",
            help="Dashboard token. Default: the token a server on this machine stored in "
            "your config directory.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the server's answer as JSON.")
    ] = False,
) -> None:
    """Every alert rule with its state (firing, pending, ok) and since when.

    Example: nilemetrics alerts list --url http://metrics-host:8000
    """
    chosen = (token or "").split(",")[0].strip() or read_stored_token(
        build_settings().config_dir
    )
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        fail(f"invalid --url {url!r}: use http://HOST:PORT or https://HOST")
    headers = {"Authorization": f"Bearer {chosen}"} if chosen else {}
    try:
        response = httpx.get(f"{base}/api/metrics/alerts", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server at {base}: {exc}")
    if response.status_code == 401:
        fail(f"the server at {base} refused the token (401): pass --token or set "
             "NILEMETRICS_DASHBOARD_TOKEN")
    if response.status_code != 200:
        fail(f"the server at {base} answered {response.status_code}: {_detail(response)}")
    body: dict[str, Any] = response.json()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    _print_rules(body, datetime.now(UTC))


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        return response.text[:200]


def _print_rules(body: dict[str, Any], now: datetime) -> None:
    rules: list[dict[str, Any]] = body.get("rules", [])
    if not rules:
        where = "" if body.get("configured") else " (this server has no --alerts file)"
        out_console.print(f"no alert rules{where}")
        return
    table = RichTable(title=f"Alert rules ({body.get('file') or 'from the database'})")
    for column in ("rule", "state", "since", "value", "condition"):
        table.add_column(column)
    for rule in rules:
        since = _when(rule.get("since"), now)
        state = str(rule.get("state"))
        style = {"firing": "bold red", "pending": "yellow", "ok": "green"}.get(state, "")
        window = rule.get("windowSeconds")
        over = f" over {format_duration(window)}" if window else " now"
        held = rule.get("forSeconds")
        hold = f", for {format_duration(held)}" if held else ""
        value = rule.get("value")
        table.add_row(
            str(rule.get("rule")), f"[{style}]{state}[/]" if style else state, since,
            "—" if value is None else f"{value:g}",
            f"{rule.get('metric')}{over} {rule.get('direction')} {rule.get('threshold'):g}{hold}",
        )
    out_console.print(table)
    pending: list[dict[str, Any]] = body.get("pending", [])
    if pending:
        out_console.print(f"{len(pending)} notification(s) not delivered yet:")
        for item in pending:
            error = f": {item.get('lastError')}" if item.get("lastError") else ""
            out_console.print(
                f'  #{item.get("id")} {item.get("kind")} of "{item.get("rule")}" to '
                f'"{item.get("notifier")}", {item.get("attempts")} attempt(s){error}',
                soft_wrap=True, markup=False,
            )


def _when(value: Any, now: datetime) -> str:
    if not isinstance(value, str):
        return "—"
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    seconds = (now - at).total_seconds()
    ago = "just now" if seconds < 1 else f"{format_duration(seconds)} ago"
    return f"{at:%Y-%m-%d %H:%M:%S}Z ({ago})"
