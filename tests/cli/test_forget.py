"""`nilemetrics forget`: erasure across tables, JSON fields and the SQLite file bytes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from nilemetrics.server.db import make_engine
from nilemetrics.server.erasure import ERASURE_KEY_FILE, Subject, subject_hash
from nilemetrics.server.tables import (
    audit_t,
    checkouts_t,
    errors_t,
    events_t,
    metadata,
    sessions_t,
    visits_t,
)
from tests.cli.conftest import Invoke
from tests.cli.seed import ALICE, ALICE_PHONE, BOB, CAROL, seed


def dump(engine: Engine) -> str:
    """Every row of every table as text (JSON columns included), lowercased."""
    parts = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                parts.append(json.dumps([str(v) for v in row]))
    return "\n".join(parts).lower()


def counts(engine: Engine, session_id: str) -> dict[str, int]:
    """Rows per table for one session."""
    out = {}
    with engine.connect() as conn:
        for table in (sessions_t, visits_t, checkouts_t, errors_t, events_t):
            out[table.name] = conn.execute(
                select(func.count()).select_from(table).where(table.c.session_id == session_id)
            ).scalar_one()
    return out


def raw_bytes(database_url: str) -> bytes:
    """The SQLite database file and its WAL, as stored on disk."""
    path = Path(database_url.removeprefix("sqlite:///"))
    data = path.read_bytes()
    wal = Path(f"{path}-wal")
    if wal.exists():
        data += wal.read_bytes()
    return data.lower()


def test_forget_erases_everything_about_the_person(
    database_url: str, nm: Invoke, tmp_path: Path
) -> None:
    """After forget --email, the email and phone appear nowhere; everyone else is intact."""
    seeded = seed(database_url)
    engine = make_engine(database_url)
    others = {name: counts(engine, seeded.sessions[name]) for name in ("S2", "S3", "S5", "S6")}
    assert ALICE in dump(engine)
    result = nm("forget", "--email", "ALICE@example.com ", "--yes", "--database-url",
                database_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    # S1 and S4: 7 visits, 1 error, 1 checkout, 2+7 events, 2 sessions deleted;
    # carol's basket and her checkout-start event name alice as recipient: scrubbed.
    assert "page_visits       │            7 │             0" in out
    assert "payment_errors    │            1 │             0" in out
    assert "checkout_sessions │            1 │             1" in out
    assert "events            │            9 │             1" in out
    assert "user_sessions     │            2 │             0" in out
    assert "2 session(s) erased" in out
    text_now = dump(engine)
    assert ALICE not in text_now
    assert ALICE_PHONE not in text_now
    assert "u-alice" not in text_now
    for sid in (seeded.sessions["S1"], seeded.sessions["S4"]):
        assert all(n == 0 for n in counts(engine, sid).values())
    for name, before in others.items():
        assert counts(engine, seeded.sessions[name]) == before, name
    with engine.connect() as conn:
        items = conn.execute(
            select(checkouts_t.c.checkout_items).where(checkouts_t.c.email == CAROL)
        ).scalar_one()
        assert items[0]["recipient"] == "[erased]"
        assert items[0]["name"] == "Gift card" and items[0]["note"] == "happy birthday"
        audit = conn.execute(select(audit_t)).one()
    key = bytes.fromhex((tmp_path / "config" / ERASURE_KEY_FILE).read_text().strip())
    assert audit.action == "forget"
    assert audit.subject_hash == subject_hash(key, Subject(email=ALICE))
    assert audit.details["deleted"]["page_visits"] == 7
    assert audit.details["selectors"] == ["email"]
    assert ALICE not in json.dumps(audit.details)
    if engine.dialect.name == "sqlite":
        engine.dispose()
        data = raw_bytes(database_url)
        assert ALICE.encode() not in data
        assert ALICE_PHONE.encode() not in data
        assert BOB.encode() in data and CAROL.encode() in data
    engine.dispose()


def test_erasure_key_is_private_and_stable(database_url: str, nm: Invoke, tmp_path: Path) -> None:
    """The audit key is created once with mode 0600 and reused, so hashes are comparable."""
    seed(database_url)
    assert nm("forget", "--email", BOB, "--yes", "--database-url", database_url).exit_code == 0
    key_file = tmp_path / "config" / ERASURE_KEY_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    first = key_file.read_text()
    assert nm("forget", "--email", BOB, "--yes", "--database-url", database_url).exit_code == 0
    assert key_file.read_text() == first
    engine = make_engine(database_url)
    with engine.connect() as conn:
        hashes = conn.execute(select(audit_t.c.subject_hash)).scalars().all()
    engine.dispose()
    assert len(hashes) == 2 and hashes[0] == hashes[1]


def test_dry_run_changes_nothing(database_url: str, nm: Invoke) -> None:
    """--dry-run prints the counts of what would go and leaves every row in place."""
    seed(database_url)
    engine = make_engine(database_url)
    before = dump(engine)
    result = nm("forget", "--email", ALICE, "--dry-run", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "would erase" in result.stdout
    assert "user_sessions     │            2" in result.stdout
    assert "nothing was changed" in result.stdout
    assert dump(engine) == before
    engine.dispose()


def test_confirmation_declined_keeps_data(database_url: str, nm: Invoke) -> None:
    """Answering no at the prompt aborts with exit 1 and erases nothing."""
    seeded = seed(database_url)
    result = nm("forget", "--phone", ALICE_PHONE, "--database-url", database_url, input="n\n")
    assert result.exit_code == 1
    assert "aborted: nothing was erased" in result.stderr
    engine = make_engine(database_url)
    assert counts(engine, seeded.sessions["S1"])["user_sessions"] == 1
    engine.dispose()


def test_confirmation_accepted_erases(database_url: str, nm: Invoke) -> None:
    """Answering yes erases; by user id, her other session (linked by her email) goes too."""
    seeded = seed(database_url)
    result = nm("forget", "--user-id", "u-alice", "--database-url", database_url, input="y\n")
    assert result.exit_code == 0, result.output
    assert "will erase" in result.stdout and "erased" in result.stdout
    engine = make_engine(database_url)
    assert counts(engine, seeded.sessions["S1"])["user_sessions"] == 0
    # S4 has no user id: the email stored with S1 links it to her.
    assert counts(engine, seeded.sessions["S4"])["user_sessions"] == 0
    assert counts(engine, seeded.sessions["S2"])["user_sessions"] == 1
    engine.dispose()


def test_forget_by_session_id_only(database_url: str, nm: Invoke) -> None:
    """--session-id erases one anonymous session's rows and nothing else."""
    seeded = seed(database_url)
    sid = seeded.sessions["S3"]
    result = nm("forget", "--session-id", sid, "--yes", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    engine = make_engine(database_url)
    assert all(n == 0 for n in counts(engine, sid).values())
    assert counts(engine, seeded.sessions["S2"])["page_visits"] == 3
    engine.dispose()


def test_forget_unknown_person_still_audited(database_url: str, nm: Invoke) -> None:
    """Nobody found: zero counts, no prompt, and the request is still audited."""
    seed(database_url)
    result = nm("forget", "--email", "nobody@example.com", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "0 session(s) erased" in result.stdout
    engine = make_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_t)).scalar_one() == 1
    engine.dispose()


def test_forget_vacuum(database_url: str, nm: Invoke) -> None:
    """--vacuum runs VACUUM after the erasure (PostgreSQL tables / the SQLite file)."""
    seed(database_url)
    result = nm("forget", "--email", BOB, "--yes", "--vacuum", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "VACUUM done." in result.stdout


@pytest.mark.parametrize("args", [[], ["--email", "  "]])
def test_forget_needs_a_selector(nm: Invoke, args: list[str], tmp_path: Path) -> None:
    """Without a selector forget refuses with one line before touching any database."""
    result = nm("forget", *args, "--database-url", f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: name the person: give an email, phone, user id or session id"
    )


def test_secure_delete_is_on(tmp_path: Path) -> None:
    """SQLite connections zero deleted content (PRAGMA secure_delete)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA secure_delete")).scalar_one() == 1
    engine.dispose()


def test_forget_unknown_session_id_erases_nothing(database_url: str, nm: Invoke) -> None:
    """A --session-id nobody has says nothing was found, not '1 session(s) erased'."""
    seed(database_url)
    engine = make_engine(database_url)
    before = dump(engine)
    result = nm("forget", "--session-id", "0b6f3e0e-8a51-4c55-9d0e-8e7c0f1d2a3b", "--yes",
                "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "nothing found: 0 session(s) erased, no rows changed" in result.stdout
    assert "1 session(s)" not in result.stdout
    assert dump(engine).count("\n") == before.count("\n") + 1  # only the audit entry
    engine.dispose()


def test_forget_without_terminal_asks_for_yes(database_url: str, nm: Invoke) -> None:
    """No --yes and no terminal to answer on (cron, a pipe): say to pass --yes; erase nothing."""
    seeded = seed(database_url)
    result = nm("forget", "--email", ALICE, "--database-url", database_url)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no terminal to confirm on, nothing was erased: pass --yes to erase without "
        "asking (or --dry-run to see what would go)"
    )
    engine = make_engine(database_url)
    assert counts(engine, seeded.sessions["S1"])["user_sessions"] == 1
    engine.dispose()
