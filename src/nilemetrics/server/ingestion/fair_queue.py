"""The writer's queue: one sub-queue per client, batches built round-robin by event count.

In one FIFO queue, a client with many big requests in flight (64 batches of 500
events) put seconds of work ahead of every other client's single event. Here
each client (its address, see :func:`client_of`) has its own FIFO of requests,
and a batch is built by deficit round robin over the clients with something
queued: on its turn a client adds ``quantum`` events to its credit and gives
whole requests, oldest first, while their events fit in the credit (credit left
over carries to its next turn, and is forgotten when its queue empties). So each
busy client gets the same share of the writer's events, whatever the size of
its requests, and a request is never split. A client whose queue was empty
takes the next turn: it has used none of its share lately.

Latency as well as share: a client's turn is *large* when it brings more than
``small`` events. Small turns share batches with small turns, large ones with
large ones (a batch holds one kind; the other kind starts the next batch). A
client sending single events therefore waits for at most the batch in flight
plus a batch of small turns, not for a flooder's 500-event transaction on top.
A batch never holds more than one turn of a client, so with one client alone a
batch holds at most ``quantum`` events of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from starlette.types import Scope

G = TypeVar("G")


def client_of(scope: Scope) -> str:
    """The client a request counts against: its address as the server sees it.

    That is the TCP peer, or, behind a proxy listed in ``FORWARDED_ALLOW_IPS``,
    the address the proxy put in ``X-Forwarded-For`` (uvicorn rewrites the
    scope's ``client``). Behind an untrusted proxy all clients are one.
    """
    client = scope.get("client")
    return str(client[0]) if client else ""


@dataclass(slots=True, eq=False)
class _Lane(Generic[G]):
    """One client's queued requests (with their event counts) and its credit."""

    items: deque[tuple[G, int]] = field(default_factory=deque)
    events: int = 0
    deficit: int = 0


class FairQueue(Generic[G]):
    """Per-client FIFO sub-queues of requests; :meth:`take` builds one fair batch."""

    def __init__(self, *, quantum: int, small: int) -> None:
        self.quantum = max(1, quantum)
        self.small = small
        self._lanes: dict[str, _Lane[G]] = {}
        #: Clients with queued requests, in round-robin order (next turn first).
        self._ring: deque[str] = deque()
        #: How many clients at the front of the ring the last batch passed over
        #: (their turn was of the other kind): they start the next batch.
        self._owed = 0
        #: Clients that got something to queue since the last batch (behind those).
        self._new = 0
        #: Events queued over all clients.
        self.events = 0
        #: Whether the last batch :meth:`take` built was of large turns, and whose.
        self.last_large = False
        self.last_clients: list[str] = []

    def __bool__(self) -> bool:
        return bool(self._ring)

    def __len__(self) -> int:
        """Number of clients with queued requests."""
        return len(self._ring)

    def queued(self, client: str) -> int:
        """Events queued for ``client``."""
        lane = self._lanes.get(client)
        return lane.events if lane is not None else 0

    def heads(self) -> Iterator[G]:
        """The oldest queued request of each client."""
        for lane in self._lanes.values():
            yield lane.items[0][0]

    def push(self, client: str, item: G, events: int) -> None:
        """Queue ``item`` (a request of ``events`` events) behind ``client``'s others."""
        lane = self._lanes.get(client)
        if lane is None:
            # A client that had nothing queued has used none of its share lately:
            # its turn comes next, behind only those the last batch passed over and
            # earlier newcomers. A flooder, never without queued requests, is never new.
            lane = self._lanes[client] = _Lane()
            self._ring.insert(self._owed + self._new, client)
            self._new += 1
        lane.items.append((item, events))
        lane.events += events
        self.events += events

    def remove(self, client: str, item: G) -> bool:
        """Take ``item`` out of the queue if it is still there."""
        lane = self._lanes.get(client)
        if lane is None:
            return False
        for index, (queued, events) in enumerate(lane.items):
            if queued is item:
                del lane.items[index]
                lane.events -= events
                self.events -= events
                if not lane.items:
                    self._forget(client)
                return True
        return False

    def _forget(self, client: str) -> None:
        del self._lanes[client]
        index = self._ring.index(client)
        if index < self._owed:
            self._owed -= 1
        elif index < self._owed + self._new:
            self._new -= 1
        del self._ring[index]

    def _turn(self, lane: _Lane[G], room: int, first: bool) -> tuple[int, int]:
        """(requests, events) ``lane`` gives on its turn within ``room`` events."""
        credit = lane.deficit + self.quantum
        count = taken = 0
        for _, events in lane.items:
            if events > credit or events > room:
                # A request bigger than a whole batch (or a quantum) goes alone.
                if not (first and count == 0):
                    break
            count += 1
            taken += events
            credit -= events
            room -= events
            if credit <= 0 or room <= 0:
                break
        return count, taken

    def take(self, max_events: int, *, large: bool = True) -> list[G]:
        """Dequeue one batch: whole requests, fairly across clients, up to ``max_events``.

        The first client in line always gives at least one request (even one over
        its credit or ``max_events``), so a batch is never empty while anything is
        queued. A client whose turn is of the other kind than the batch's keeps
        its place in line, so it starts the next batch.

        ``large=False`` takes small turns only (large ones keep their places):
        empty when only large turns are queued. :attr:`last_large` tells the kind
        of the batch taken, :attr:`last_clients` whose turns it holds.
        """
        batch: list[G] = []
        total = 0
        kind = False
        skipped: list[str] = []
        served: list[str] = []
        taken: list[str] = []
        while self._ring and total < max_events:
            client = self._ring.popleft()
            lane = self._lanes[client]
            count, events = self._turn(lane, max_events - total, not batch)
            if (batch and (count == 0 or (events > self.small) != kind)) or (
                not large and events > self.small
            ):
                skipped.append(client)
                continue
            kind = events > self.small
            taken.append(client)
            for _ in range(count):
                batch.append(lane.items.popleft()[0])
            lane.events -= events
            self.events -= events
            total += events
            if lane.items:
                lane.deficit = max(0, lane.deficit + self.quantum - events)
                served.append(client)
            else:
                del self._lanes[client]
        self._ring.extendleft(reversed(skipped))
        self._ring.extend(served)
        self._owed = len(skipped)
        self._new = 0
        self.last_large = kind
        self.last_clients = taken
        return batch
