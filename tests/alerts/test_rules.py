"""The rules file: the issue's example as written, and one clear line for every mistake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nilemetrics.server.alerts.episodes import Episode, step
from nilemetrics.server.alerts.rules import AlertsFileError, Rule, load_rules

EXAMPLE = '''
[[notify]]
name = "ops"
url = "json://127.0.0.1:9000/hook"     # any Apprise URL: slack://, discord://, mailtos://, tgram://, json://, ...

[[rule]]
name = "payment errors"
metric = "payment_errors"             # payment_errors | payment_success_rate | live_sessions | page_visits | error_code:<code>
window = "5m"
above = 5                             # or: below = 0.8
for = "0s"                            # must hold this long before firing
notify = ["ops"]
'''


def test_the_issue_example_loads_as_written(tmp_path: Path) -> None:
    """The example of the issue, comments and all, is a valid rules file."""
    path = tmp_path / "alerts.toml"
    path.write_text(EXAMPLE)
    config = load_rules(path)
    assert list(config.notifiers) == ["ops"]
    assert config.notifiers["ops"].urls == ("json://127.0.0.1:9000/hook",)
    [rule] = config.rules
    assert rule == Rule(name="payment errors", metric="payment_errors", window=300.0,
                        direction="above", threshold=5.0, hold=0.0, notify=("ops",))
    assert rule.describe() == "payment_errors over the last 5m above 5 -> ops"


def test_every_field_of_a_rule(tmp_path: Path) -> None:
    """below, for, repeat, include_contacts, error_code:<code> and several URLs are read."""
    path = tmp_path / "alerts.toml"
    path.write_text(EXAMPLE + '''
[[notify]]
name = "mail"
url = ["mailto://localhost:2525?from=alerts@shop.test&to=ops@shop.test",
       "json://127.0.0.1:9001/other"]

[[rule]]
name = "declines"
metric = "error_code:card_declined"
window = "15m"
above = 10
for = "2m"
repeat = "1h"
include_contacts = true
notify = ["ops", "mail"]

[[rule]]
name = "shop down"
metric = "page_visits"
window = "10m"
below = 1
notify = "mail"
''')
    config = load_rules(path)
    declines, down = config.rules[1], config.rules[2]
    assert (declines.error_code, declines.hold, declines.repeat, declines.include_contacts) == (
        "card_declined", 120.0, 3600.0, True)
    assert declines.notify == ("ops", "mail")
    assert (down.direction, down.threshold, down.notify) == ("below", 1.0, ("mail",))
    assert len(config.notifiers["mail"].urls) == 2
    assert config.rule("shop down") is down and config.rule("nope") is None


RULE = '''
[[notify]]
name = "ops"
url = "json://127.0.0.1:9000/hook"

[[rule]]
name = "r"
metric = "payment_errors"
window = "5m"
above = 5
notify = ["ops"]
'''


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('window = "5m"', 'window = "5x"'),
         "rule \"r\": window: invalid duration '5x': use a number of seconds or forms like "
         "90s, 30m, 1h30m, 7d"),
        (('window = "5m"', ""), 'rule "r": window: missing (how far back to count, e.g. "5m")'),
        (('metric = "payment_errors"', 'metric = "errors"'),
         "rule \"r\": metric: 'errors' is not one of payment_errors, payment_success_rate, "
         "live_sessions, page_visits, error_code:<code>"),
        (('metric = "payment_errors"', 'metric = "error_code:"'),
         'rule "r": metric: error_code: needs a code, e.g. error_code:card_declined'),
        (("above = 5", "above = 5\nbelow = 1"),
         'rule "r": above / below: give exactly one of them (above = 5 or below = 0.8)'),
        (("above = 5", 'above = "five"'), 'rule "r": above: must be a number'),
        (('notify = ["ops"]', 'notify = ["pager"]'),
         'rule "r": notify: no [[notify]] named "pager" (defined: "ops")'),
        (('notify = ["ops"]', "notify = []"),
         'rule "r": notify: must be a non-empty list of [[notify]] names'),
        (('above = 5', 'above = 5\nabvoe = 6'),
         'rule "r": abvoe: unknown field (a [[rule]] has above, below, for, include_contacts, '
         'metric, name, notify, repeat, window)'),
        (('above = 5', 'above = 5\nfor = -1'),
         "rule \"r\": for: invalid duration '-1': must not be negative"),
        (('above = 5', 'above = 5\nrepeat = "0s"'),
         'rule "r": repeat: must be longer than 0s (leave it out for no repeats)'),
        (('above = 5', 'above = 5\ninclude_contacts = "yes"'),
         'rule "r": include_contacts: must be true or false'),
        (('name = "r"', ""), "rule #1: name: missing"),
        (('url = "json://127.0.0.1:9000/hook"', 'url = "jsn://127.0.0.1:9000/hook"'),
         'notify "ops": url: Apprise does not know the scheme jsn:// (see its list of services)'),
        (('url = "json://127.0.0.1:9000/hook"', 'url = "127.0.0.1:9000/hook"'),
         'notify "ops": url: not a URL (Apprise URLs look like slack://..., mailtos://..., '
         'json://host/path)'),
        (('url = "json://127.0.0.1:9000/hook"',
          'url = "mailto://127.0.0.1:2525?from=a@b.c&to=ops@shop.test"'),
         'notify "ops": url: Apprise cannot use it: Invalid ~From~ email specified: a@b.c'),
        (("[[rule]]", "[rule]"), "rule: must be an array of tables: write [[rule]], not [rule]"),
        (("[[rule]]", "[[rules]]"),
         "top-level key 'rules': unknown (the file has [[notify]] and [[rule]] tables only)"),
    ],
)
def test_each_mistake_is_one_line_naming_file_rule_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    """A bad value is refused with one line: the file, the rule (or notifier) and the field."""
    path = tmp_path / "alerts.toml"
    old, new = change
    assert old in RULE
    path.write_text(RULE.replace(old, new, 1))
    with pytest.raises(AlertsFileError) as caught:
        load_rules(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {message}"), text


def test_files_that_cannot_be_read_or_parsed(tmp_path: Path) -> None:
    """A missing file, broken TOML, a rule-less file and a duplicate name say so in one line."""
    missing = tmp_path / "none.toml"
    with pytest.raises(AlertsFileError, match=r"none.toml: cannot read the alerts file: No such"):
        load_rules(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rule]\nname = 1")
    with pytest.raises(AlertsFileError, match=r"broken.toml: not valid TOML: "):
        load_rules(broken)
    empty = tmp_path / "empty.toml"
    empty.write_text(RULE.split("[[rule]]")[0])
    with pytest.raises(AlertsFileError, match=r"empty.toml: rule: no \[\[rule\]\] in the file"):
        load_rules(empty)
    twice = tmp_path / "twice.toml"
    twice.write_text(RULE + "[[rule]]" + RULE.split("[[rule]]")[1])
    with pytest.raises(AlertsFileError,
                       match=r'twice.toml: rule "r": name: used by an earlier \[\[rule\]\] too'):
        load_rules(twice)


def test_rate_thresholds_and_live_sessions_windows(tmp_path: Path) -> None:
    """A success rate threshold is a share (0..1); live_sessions takes `for`, not a window."""
    path = tmp_path / "alerts.toml"
    path.write_text(RULE.replace('"payment_errors"', '"payment_success_rate"')
                    .replace("above = 5", "below = 80"))
    with pytest.raises(AlertsFileError, match=r"below: payment_success_rate is a share from 0 "
                                              r"to 1 \(0.8 is 80%\), got 80"):
        load_rules(path)
    path.write_text(RULE.replace('"payment_errors"', '"live_sessions"'))
    with pytest.raises(AlertsFileError, match=r"window: live_sessions counts the sessions live "
                                              r"now and has no window"):
        load_rules(path)
    path.write_text(RULE.replace('"payment_errors"', '"live_sessions"')
                    .replace('window = "5m"', 'for = "10m"').replace("above = 5", "below = 1"))
    [rule] = load_rules(path).rules
    assert (rule.window, rule.hold, rule.describe()) == (
        None, 600.0, "live_sessions now below 1, held 10m -> ops")


T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _rule(**changes: object) -> Rule:
    base: dict[str, object] = {
        "name": "r", "metric": "payment_errors", "window": 300.0, "direction": "above",
        "threshold": 5.0, "hold": 0.0, "notify": ("ops",),
    }
    base.update(changes)
    return Rule(**base)  # type: ignore[arg-type]


def _run(rule: Rule, values: list[tuple[float, float | None]]) -> list[tuple[str, str | None]]:
    """Feed (seconds after T0, value) pairs through step(); the states and notifications."""
    state: Episode | None = None
    out: list[tuple[str, str | None]] = []
    for seconds, value in values:
        state, kind = step(rule, state, value, T0 + timedelta(seconds=seconds))
        out.append((state.state, kind))
    return out


def test_one_firing_per_episode_and_a_resolved_after() -> None:
    """Firing once while it holds (no repeats), resolved once when it clears, then a new one."""
    assert _run(_rule(), [(0, 3), (5, 6), (10, 9), (15, 7), (20, 2), (25, 1), (30, 8)]) == [
        ("ok", None), ("firing", "firing"), ("firing", None), ("firing", None),
        ("ok", "resolved"), ("ok", None), ("firing", "firing"),
    ]


def test_for_delays_firing_and_a_short_blip_notifies_nobody() -> None:
    """With for = 60s the condition must hold a minute; one that clears sooner never fires."""
    rule = _rule(hold=60.0)
    assert _run(rule, [(0, 9), (30, 9), (50, 1), (60, 9), (119, 9), (120, 9), (125, 9)]) == [
        ("pending", None), ("pending", None), ("ok", None), ("pending", None),
        ("pending", None), ("firing", "firing"), ("firing", None),
    ]


def test_repeat_reminds_while_it_holds() -> None:
    """repeat = 1h: a reminder each hour the condition still holds, counted from the last."""
    rule = _rule(repeat=3600.0)
    assert _run(rule, [(0, 9), (3599, 9), (3600, 9), (3700, 9), (7200, 9), (7300, 1)]) == [
        ("firing", "firing"), ("firing", None), ("firing", "repeat"), ("firing", None),
        ("firing", "repeat"), ("ok", "resolved"),
    ]


def test_below_and_no_value() -> None:
    """below fires under the threshold; no value (no payment outcome) never holds."""
    rule = _rule(metric="payment_success_rate", direction="below", threshold=0.8)
    assert _run(rule, [(0, 0.9), (5, 0.5), (10, None), (15, 0.5)]) == [
        ("ok", None), ("firing", "firing"), ("ok", "resolved"), ("firing", "firing"),
    ]


def test_page_visits_are_counted_up_to_a_cap(tmp_path: Path) -> None:
    """page_visits stops counting at its cap (twice the threshold, at least 10,000)."""
    from sqlalchemy import insert

    from nilemetrics.server.alerts.values import page_visits, visits_cap
    from nilemetrics.server.db import make_engine, migrate
    from nilemetrics.server.tables import visits_t

    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(visits_t), [
            {"session_id": f"s{i}", "page_type": page, "entered_at": T0 - timedelta(seconds=s),
             "is_active": False}
            for i, (page, s) in enumerate([("homepage", 10), ("offer", 20), ("cart", 30),
                                           ("cart", 40), ("homepage", 900)])])
    with engine.connect() as conn:
        since = T0 - timedelta(minutes=5)
        assert page_visits(conn, since) == 4  # every page type, the old visit left out
        assert page_visits(conn, since, cap=2) == 2
        assert page_visits(conn, T0 - timedelta(hours=1), cap=100) == 5
    engine.dispose()
    assert (visits_cap(1), visits_cap(8000)) == (10_000, 16_001)
