"""Sending one notification to one Apprise URL (Slack, Discord, e-mail, JSON, ...).

Apprise knows each service's format; nothing here writes a Slack or e-mail
payload by hand. It answers only "sent" or "not sent", so the reason of a
failure is taken from what it logged (with secrets masked, as Apprise does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from nilemetrics.server.alerts.messages import Message

#: Sends ``message`` to ``url``; returns None when sent, else why not (one line).
Sender = Callable[[str, Message], str | None]

# Apprise's log capture hooks its one global logger: one send at a time per process
# keeps each failure's reason with its own notification.
_capture_lock = threading.Lock()


def send_apprise(url: str, message: Message) -> str | None:
    """Send ``message`` through Apprise; None if the service accepted it, else the reason."""
    import apprise

    with _capture_lock, apprise.LogCapture(  # type: ignore[no-untyped-call]
        level=logging.WARNING, fmt="%(message)s"
    ) as captured:
        sender = apprise.Apprise()
        if not sender.add(url):
            return "Apprise cannot use this URL"
        try:
            sent = sender.notify(
                body=message.body,
                title=message.title,
                notify_type=apprise.NotifyType(message.notify_type),
                body_format=apprise.NotifyFormat.TEXT,
            )
        except Exception as exc:  # a plugin bug must not stop the delivery loop
            return f"{type(exc).__name__}: {exc}"[:500]
        said = [line.strip() for line in str(captured.getvalue()).splitlines() if line.strip()]
    if sent:
        return None
    return ("; ".join(said[-2:]) or "the service did not accept the notification")[:1000]


def warm_up() -> None:
    """Load Apprise's plugins now (about a second), not at the first notification."""
    try:
        from apprise.manager_plugins import NotificationManager

        NotificationManager().schemas()  # type: ignore[no-untyped-call]
    except Exception as exc:  # the first notification will load them (and say what fails)
        logging.getLogger(__name__).debug("could not preload Apprise's plugins: %s", exc)
