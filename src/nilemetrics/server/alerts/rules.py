"""The alert rules file (TOML): ``[[notify]]`` targets and ``[[rule]]`` conditions.

Every mistake is one line naming the file, the rule (or notifier) and the field,
so that ``serve`` can refuse to start with it and ``alerts check`` can say it::

    alerts.toml: rule "payment errors": window: invalid duration '5x': ...
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nilemetrics.durations import format_duration, parse_duration

#: Metrics a rule can watch (``error_code:<code>`` too).
METRICS = ("payment_errors", "payment_success_rate", "live_sessions", "page_visits")
ERROR_CODE_PREFIX = "error_code:"

#: Longest rule or notifier name (the state table's column).
MAX_NAME = 200
#: Longest error code (the payment_errors column).
MAX_CODE = 255

_NOTIFY_FIELDS = frozenset({"name", "url"})
_RULE_FIELDS = frozenset(
    {"name", "metric", "window", "above", "below", "for", "notify", "repeat",
     "include_contacts"}
)

Direction = Literal["above", "below"]


class AlertsFileError(ValueError):
    """The rules file cannot be used; the message is one line naming file, rule and field."""


@dataclass(frozen=True, slots=True)
class Notifier:
    """A named notification target: one or more Apprise URLs."""

    name: str
    urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert condition: ``metric`` over ``window`` above/below ``threshold``."""

    name: str
    metric: str
    window: float | None
    direction: Direction
    threshold: float
    hold: float
    notify: tuple[str, ...]
    repeat: float | None = None
    include_contacts: bool = False

    @property
    def error_code(self) -> str | None:
        """The code of an ``error_code:<code>`` metric, else None."""
        if self.metric.startswith(ERROR_CODE_PREFIX):
            return self.metric[len(ERROR_CODE_PREFIX):]
        return None

    def holds(self, value: float | None) -> bool:
        """Whether the condition holds for ``value`` (no value: it does not)."""
        if value is None:
            return False
        return value > self.threshold if self.direction == "above" else value < self.threshold

    def window_text(self) -> str:
        """``over the last 5m``, or ``now`` for a count of this moment."""
        return "now" if self.window is None else f"over the last {format_duration(self.window)}"

    def describe(self) -> str:
        """One line: ``payment_errors over the last 5m above 5, held 0s -> ops``."""
        held = f", held {format_duration(self.hold)}" if self.hold else ""
        repeat = f", repeated every {format_duration(self.repeat)}" if self.repeat else ""
        contacts = ", with contacts" if self.include_contacts else ""
        return (
            f"{self.metric} {self.window_text()} {self.direction} {format_value(self.threshold)}"
            f"{held}{repeat}{contacts} -> {', '.join(self.notify)}"
        )


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """A validated rules file."""

    path: Path
    notifiers: dict[str, Notifier]
    rules: tuple[Rule, ...]

    def rule(self, name: str) -> Rule | None:
        """The rule called ``name``, if any."""
        return next((rule for rule in self.rules if rule.name == name), None)


def format_value(value: float) -> str:
    """A number as a person writes it: ``5``, ``0.8``, ``12.5``."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


#: Checks one Apprise URL: None if usable, else why not. Replaceable in tests.
UrlCheck = Callable[[str], str | None]


def apprise_url_problem(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (its own words, secrets masked), or None if it can."""
    import apprise
    from apprise.manager_plugins import NotificationManager

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        return "not a URL (Apprise URLs look like slack://..., mailtos://..., json://host/path)"
    known = NotificationManager().schemas()  # type: ignore[no-untyped-call]
    if scheme not in known:
        return f"Apprise does not know the scheme {scheme}:// (see its list of services)"
    with apprise.LogCapture(  # type: ignore[no-untyped-call]
        level=logging.WARNING, fmt="%(message)s"
    ) as captured:
        plugin = apprise.Apprise.instantiate(url)
    if plugin is not None:
        return None
    said = [line.strip() for line in str(captured.getvalue()).splitlines() if line.strip()]
    return "Apprise cannot use it: " + ("; ".join(said[:2]) or "it did not say why")


def load_rules(path: Path, *, check_url: UrlCheck | None = None) -> AlertsConfig:
    """Read and validate the rules file at ``path``; raise :class:`AlertsFileError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AlertsFileError(f"{path}: cannot read the alerts file: {exc.strerror or exc}") \
            from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise AlertsFileError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise AlertsFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_rules(data, path, check_url=check_url or apprise_url_problem)


def parse_rules(data: dict[str, Any], path: Path, *, check_url: UrlCheck) -> AlertsConfig:
    """Validate a decoded rules file (see :func:`load_rules`)."""

    def fail(where: str, message: str) -> AlertsFileError:
        return AlertsFileError(f"{path}: {where}: {message}")

    unknown = sorted(set(data) - {"notify", "rule"})
    if unknown:
        raise fail(f"top-level key {unknown[0]!r}",
                   "unknown (the file has [[notify]] and [[rule]] tables only)")
    notifiers: dict[str, Notifier] = {}
    for index, entry in enumerate(_tables(data, "notify", fail), start=1):
        notifier = _notifier(entry, index, fail, check_url)
        if notifier.name in notifiers:
            raise fail(f'notify "{notifier.name}"', "name: used by an earlier [[notify]] too")
        notifiers[notifier.name] = notifier
    rules: list[Rule] = []
    for index, entry in enumerate(_tables(data, "rule", fail), start=1):
        rule = _rule(entry, index, fail, notifiers)
        if any(other.name == rule.name for other in rules):
            raise fail(f'rule "{rule.name}"', "name: used by an earlier [[rule]] too")
        rules.append(rule)
    if not rules:
        raise fail("rule", "no [[rule]] in the file: add at least one")
    return AlertsConfig(path=path, notifiers=notifiers, rules=tuple(rules))


Fail = Callable[[str, str], AlertsFileError]


def _tables(data: dict[str, Any], key: str, fail: Fail) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if isinstance(value, dict):
        raise fail(key, f"must be an array of tables: write [[{key}]], not [{key}]")
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise fail(key, f"must be an array of tables: write [[{key}]]")
    return value


def _name(entry: dict[str, Any], where: str, fail: Fail) -> str:
    name = entry.get("name")
    if name is None:
        raise fail(where, "name: missing")
    if not isinstance(name, str) or not name.strip():
        raise fail(where, "name: must be a non-empty string")
    if len(name) > MAX_NAME:
        raise fail(where, f"name: longer than {MAX_NAME} characters")
    return name


def _notifier(entry: dict[str, Any], index: int, fail: Fail, check_url: UrlCheck) -> Notifier:
    name = _name(entry, f"notify #{index}", fail)
    where = f'notify "{name}"'
    extra = sorted(set(entry) - _NOTIFY_FIELDS)
    if extra:
        raise fail(where, f"{extra[0]}: unknown field (a [[notify]] has name and url)")
    url = entry.get("url")
    if url is None:
        raise fail(where, "url: missing (an Apprise URL such as slack://..., json://host/path)")
    urls = [url] if isinstance(url, str) else url
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise fail(where, "url: must be an Apprise URL or a list of them")
    for item in urls:
        problem = check_url(item.strip())
        if problem is not None:
            raise fail(where, f"url: {problem}")
    return Notifier(name=name, urls=tuple(item.strip() for item in urls))


def _duration(entry: dict[str, Any], key: str, where: str, fail: Fail) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise fail(where, f"{key}: must be a duration such as \"90s\", \"5m\" or \"1h\"")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise fail(where, f"{key}: {exc}") from None


def _rule(
    entry: dict[str, Any], index: int, fail: Fail, notifiers: dict[str, Notifier]
) -> Rule:
    name = _name(entry, f"rule #{index}", fail)
    where = f'rule "{name}"'
    extra = sorted(set(entry) - _RULE_FIELDS)
    if extra:
        raise fail(where, f"{extra[0]}: unknown field (a [[rule]] has "
                          f"{', '.join(sorted(_RULE_FIELDS))})")
    metric = entry.get("metric")
    choices = ", ".join((*METRICS, ERROR_CODE_PREFIX + "<code>"))
    if metric is None:
        raise fail(where, f"metric: missing (one of {choices})")
    if not isinstance(metric, str) or not (
        metric in METRICS or metric.startswith(ERROR_CODE_PREFIX)
    ):
        raise fail(where, f"metric: {metric!r} is not one of {choices}")
    if metric.startswith(ERROR_CODE_PREFIX):
        code = metric[len(ERROR_CODE_PREFIX):]
        if not code.strip():
            raise fail(where, "metric: error_code: needs a code, e.g. error_code:card_declined")
        if len(code) > MAX_CODE:
            raise fail(where, f"metric: the error code is longer than {MAX_CODE} characters")

    window = _duration(entry, "window", where, fail)
    if metric == "live_sessions":
        if window is not None:
            raise fail(where, "window: live_sessions counts the sessions live now and has no "
                              "window; use for = \"5m\" to require the condition to last")
    elif window is None:
        raise fail(where, "window: missing (how far back to count, e.g. \"5m\")")
    elif window <= 0:
        raise fail(where, "window: must be longer than 0s")

    given = [key for key in ("above", "below") if key in entry]
    if len(given) != 1:
        raise fail(where, "above / below: give exactly one of them (above = 5 or below = 0.8)")
    direction: Direction = "above" if given[0] == "above" else "below"
    threshold = entry[direction]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise fail(where, f"{direction}: must be a number")
    if threshold != threshold or threshold in (float("inf"), float("-inf")):
        raise fail(where, f"{direction}: must be a finite number")
    if metric == "payment_success_rate" and not 0 <= threshold <= 1:
        raise fail(where, f"{direction}: payment_success_rate is a share from 0 to 1 "
                          f"(0.8 is 80%), got {threshold}")

    hold = _duration(entry, "for", where, fail) or 0.0
    repeat = _duration(entry, "repeat", where, fail)
    if repeat is not None and repeat <= 0:
        raise fail(where, "repeat: must be longer than 0s (leave it out for no repeats)")

    notify = entry.get("notify")
    names = [notify] if isinstance(notify, str) else notify
    if names is None:
        raise fail(where, "notify: missing (a list of [[notify]] names, e.g. [\"ops\"])")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise fail(where, "notify: must be a non-empty list of [[notify]] names")
    for target in names:
        if target not in notifiers:
            known = ", ".join(f'"{n}"' for n in notifiers) or "none"
            raise fail(where, f'notify: no [[notify]] named "{target}" (defined: {known})')

    contacts = entry.get("include_contacts", False)
    if not isinstance(contacts, bool):
        raise fail(where, "include_contacts: must be true or false")
    return Rule(
        name=name, metric=metric, window=window, direction=direction,
        threshold=float(threshold), hold=hold, notify=tuple(dict.fromkeys(names)),
        repeat=repeat, include_contacts=contacts,
    )
