"""Readable browser names from User-Agent strings: ``Chrome 131 · Windows``.

A deliberately small parser: the error table and the customer journey need the
browser family, major version, platform and kind of device of the common
browsers, not a full UA database. Shared by the server (journeys) and the
dashboard (the error table).
"""

from __future__ import annotations

import re

# Order matters: Edge, Opera, Samsung and others also claim "Chrome" and "Safari".
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("Edge", r"Edg(?:e|A|iOS)?/(\d+)"),
        ("Opera", r"(?:OPR|Opera)/(\d+)"),
        ("Samsung Internet", r"SamsungBrowser/(\d+)"),
        ("Yandex", r"YaBrowser/(\d+)"),
        ("Vivaldi", r"Vivaldi/(\d+)"),
        ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"),
        ("Chrome", r"(?:Chrome|CriOS)/(\d+)"),
        ("Safari", r"Version/(\d+)(?:\.\d+)*.*Safari/"),
        ("IE", r"(?:MSIE |Trident/.*rv:)(\d+)"),
        ("curl", r"^curl/(\d+)"),
        ("python-httpx", r"python-httpx/(\d+)"),
        ("Python requests", r"python-requests/(\d+)"),
    )
)

_PLATFORMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("Android", r"Android"),
        ("iOS", r"iPhone|iPad|iPod"),
        ("ChromeOS", r"CrOS"),
        ("Windows", r"Windows"),
        ("macOS", r"Macintosh|Mac OS X"),
        ("Linux", r"Linux|X11"),
    )
)

_BOT = re.compile(r"bot|crawler|spider|HeadlessChrome", re.IGNORECASE)
_TABLET = re.compile(r"iPad|Tablet|Android(?!.*Mobile)", re.IGNORECASE)
_MOBILE = re.compile(r"Mobi|iPhone|iPod|Android|Windows Phone", re.IGNORECASE)


def describe_user_agent(user_agent: str | None) -> str:
    """``Chrome 131 · Windows``; the parts that are known; empty for no user agent."""
    if not user_agent:
        return ""
    browser = ""
    for name, pattern in _BROWSERS:
        match = pattern.search(user_agent)
        if match:
            browser = f"{name} {match.group(1)}"
            break
    if _BOT.search(user_agent):
        browser = f"{browser} (bot)" if browser else "bot"
    platform = next((name for name, pattern in _PLATFORMS if pattern.search(user_agent)), "")
    parts = [part for part in (browser, platform) if part]
    if not parts:
        # Unknown: show the product token rather than nothing.
        return user_agent.split(" ", 1)[0][:40]
    return " · ".join(parts)


def device_kind(user_agent: str | None) -> str:
    """``desktop``, ``mobile``, ``tablet`` or ``bot``; empty for no user agent."""
    if not user_agent:
        return ""
    if _BOT.search(user_agent):
        return "bot"
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    return "desktop"
