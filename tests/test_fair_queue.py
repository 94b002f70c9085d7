"""The writer's per-client queue: batches built round-robin by event count (no server)."""

from __future__ import annotations

from nilemetrics.server.ingestion.fair_queue import FairQueue


def _queue() -> FairQueue[str]:
    return FairQueue(quantum=500, small=64)


def _push(queue: FairQueue[str], client: str, name: str, events: int) -> None:
    queue.push(client, name, events)


def test_one_client_is_served_in_order_one_quantum_per_batch() -> None:
    """Alone, a client's requests come out in order, whole, at most a quantum per batch."""
    queue = _queue()
    for n in range(5):
        _push(queue, "a", f"a{n}", 250)
    assert queue.events == 1250
    assert queue.take(1000) == ["a0", "a1"]
    assert queue.take(1000) == ["a2", "a3"]
    assert queue.take(1000) == ["a4"]
    assert queue.take(1000) == []
    assert (queue.events, len(queue), bool(queue)) == (0, 0, False)


def test_many_single_events_of_one_client_fill_a_batch_up_to_the_quantum() -> None:
    """Single events of one client (the common case) share batches as before, FIFO."""
    queue = _queue()
    for n in range(600):
        _push(queue, "a", f"e{n}", 1)
    first = queue.take(1000)
    assert first == [f"e{n}" for n in range(500)]
    assert queue.take(1000) == [f"e{n}" for n in range(500, 600)]


def test_a_light_client_is_not_batched_with_a_flood_and_goes_next() -> None:
    """A single event queued behind a flood is the whole next batch; the flood follows."""
    queue = _queue()
    for n in range(10):
        _push(queue, "flood", f"f{n}", 500)
    assert queue.take(1000) == ["f0"]
    _push(queue, "victim", "v0", 1)
    assert queue.take(1000) == ["v0"]
    assert queue.take(1000) == ["f1"]
    _push(queue, "victim", "v1", 1)
    _push(queue, "other", "o0", 3)
    assert queue.take(1000) == ["v1", "o0"]
    assert queue.take(1000) == ["f2"]


def test_newcomers_never_starve_a_flood() -> None:
    """Light clients arriving before every batch still leave the flood every other batch."""
    queue = _queue()
    for n in range(4):
        _push(queue, "flood", f"f{n}", 500)
    batches = []
    for n in range(6):
        _push(queue, f"light{n}", f"l{n}", 1)
        batches.append(queue.take(1000))
    assert batches == [["f0"], ["l0", "l1"], ["f1"], ["l2", "l3"], ["f2"], ["l4", "l5"]]


def test_busy_clients_get_equal_shares_of_events_whatever_their_request_size() -> None:
    """Deficit round robin: 25-event and 500-event requests get 500 events each per batch."""
    queue = _queue()
    for n in range(40):
        _push(queue, "small-requests", f"s{n}", 25)
    for n in range(2):
        _push(queue, "big-requests", f"b{n}", 500)
    assert queue.take(1000) == [f"s{n}" for n in range(20)] + ["b0"]
    assert queue.take(1000) == [f"s{n}" for n in range(20, 40)] + ["b1"]


def test_credit_left_over_carries_to_the_next_turn() -> None:
    """300-event requests with a 500-event quantum: 300, 600, 600, 300 (500 per turn)."""
    queue = _queue()
    for n in range(6):
        _push(queue, "a", f"a{n}", 300)
    sizes = [300 * len(queue.take(1000)) for _ in range(4)]
    assert sizes == [300, 600, 600, 300]


def test_a_request_bigger_than_the_batch_goes_alone() -> None:
    """A request over the batch size (or the quantum) is still taken, alone."""
    queue = FairQueue[str](quantum=50, small=10)
    _push(queue, "a", "huge", 150)
    _push(queue, "a", "next", 1)
    assert queue.take(100) == ["huge"]
    assert queue.take(100) == ["next"]


def test_remove_takes_a_request_out_and_forgets_an_idle_client() -> None:
    """A request given up on leaves the queue; counts follow; an empty client is gone."""
    queue = _queue()
    _push(queue, "a", "a0", 10)
    _push(queue, "a", "a1", 20)
    _push(queue, "b", "b0", 5)
    assert queue.remove("a", "a0") is True
    assert queue.remove("a", "a0") is False
    assert queue.remove("nobody", "a0") is False
    assert (queue.queued("a"), queue.queued("b"), queue.events) == (20, 5, 25)
    assert queue.remove("b", "b0") is True
    assert (queue.queued("b"), len(queue)) == (0, 1)
    assert sorted(queue.heads()) == ["a1"]
    assert queue.take(1000) == ["a1"]


def test_a_removed_passed_over_client_does_not_keep_its_place() -> None:
    """A passed-over client whose request was dropped leaves the front of the line."""
    queue = _queue()
    _push(queue, "flood", "f0", 500)
    _push(queue, "flood", "f1", 500)
    assert queue.take(1000) == ["f0"]
    _push(queue, "victim", "v0", 1)
    assert queue.take(1000) == ["v0"]  # the flood was passed over: it is owed a batch
    assert queue.remove("flood", "f1") is True
    _push(queue, "late", "l0", 1)
    _push(queue, "flood", "f2", 500)  # idle now, so new too, behind the earlier newcomer
    assert queue.take(1000) == ["l0"]
    assert queue.take(1000) == ["f2"]


def test_small_turns_only_leaves_large_turns_in_their_places() -> None:
    """``large=False`` (the writer's pause after a flood's batch) serves only small turns."""
    queue = _queue()
    _push(queue, "flood", "f0", 500)
    _push(queue, "flood", "f1", 500)
    assert queue.take(1000, large=False) == []
    assert queue.events == 1000  # nothing lost
    _push(queue, "victim", "v0", 1)
    _push(queue, "other", "o0", 2)
    assert queue.take(1000, large=False) == ["v0", "o0"]
    assert (queue.last_large, queue.last_clients) == (False, ["victim", "other"])
    assert queue.take(1000) == ["f0"]  # the pause over, the flood is first in line
    assert (queue.last_large, queue.last_clients) == (True, ["flood"])
    _push(queue, "victim", "v1", 1)
    assert queue.take(1000, large=False) == ["v1"]
    assert queue.take(1000) == ["f1"]
    assert (queue.events, bool(queue)) == (0, False)
