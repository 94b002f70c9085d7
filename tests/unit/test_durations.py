"""Human durations (90s, 30m, 1h30m, 7d) parsed to seconds and formatted back."""

from __future__ import annotations

import pytest

from nilemetrics.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("1d2h3m4s", 93784.0),
        (" 1H 30M ", 5400.0),
        ("42", 42.0),
        ("0.5", 0.5),
        ("0s", 0.0),
        (42, 42.0),
        (2.5, 2.5),
    ],
)
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    """Units ms/s/m/h/d/w combine, any case and spacing; a bare number is seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "   ", "abc", "h", "1h30", "30m1x", "1.h", "m30", "5 years"])
def test_malformed_durations_are_refused_with_a_hint(text: str) -> None:
    """Anything else is a ValueError that quotes the input and shows the accepted forms."""
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"invalid duration {text!r}: use a number of seconds or forms like 90s, 30m, 1h30m, 7d"
    )


def test_a_negative_duration_is_refused() -> None:
    """A negative number of seconds is refused with its own message."""
    with pytest.raises(ValueError, match=r"^invalid duration '-5': must not be negative$"):
        parse_duration("-5")
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(-1)


def test_a_boolean_is_not_a_duration() -> None:
    """True is not 1 second (a YAML/env mistake must not pass silently)."""
    with pytest.raises(ValueError, match="invalid duration 'True'"):
        parse_duration(True)


@pytest.mark.parametrize(
    "text",
    [
        "nan", "inf", "-inf", "infinity", "1e400",
        pytest.param("1" + "0" * 400 + "s", id="huge-seconds"),
        pytest.param(float("nan"), id="float-nan"),
    ],
)
def test_non_finite_durations_are_refused(text: str | float) -> None:
    """NaN and infinity are no durations (timedelta() and comparisons cannot use them)."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.25, "250ms"),
        (1, "1s"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400, "1d"),
        (93784, "1d2h3m4s"),
        (604800, "7d"),
        (59.6, "1m"),
    ],
)
def test_durations_format_compactly(seconds: float, text: str) -> None:
    """Seconds render as the largest units first, rounded to whole seconds from 1 s up."""
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 1, 59, 61, 3599, 3601, 86399, 90061, 1209600])
def test_formatting_is_the_inverse_of_parsing(seconds: float) -> None:
    """parse_duration(format_duration(x)) == x for whole seconds and sub-second values."""
    assert parse_duration(format_duration(seconds)) == seconds
