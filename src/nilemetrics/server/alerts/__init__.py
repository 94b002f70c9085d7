"""Alert rules evaluated by the server, with notifications through Apprise.

- :mod:`.rules`: the TOML rules file, validated with one-line errors.
- :mod:`.values`: what a rule's metric is now, read from the database (shared by
  every process).
- :mod:`.episodes`: the ok / pending / firing state machine and one evaluation tick.
- :mod:`.messages`: what a notification says.
- :mod:`.outbox`: durable delivery: claimed once, retried with backoff, marked sent.
- :mod:`.delivery`: sending one notification with Apprise.
- :mod:`.engine`: the evaluator and the delivery loop as one object with start/stop.
"""
