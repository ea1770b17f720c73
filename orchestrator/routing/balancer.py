"""Which replica of a model gets a call: least outstanding work, then prefix affinity.

Load is calls in flight from this orchestrator divided by the replica's batch capacity
(`max_num_seqs`), so a replica with room in its engine batch always wins over one that would
queue. Among replicas with room, one that recently served the same prompt prefix is preferred:
its engine likely still holds those KV blocks, so the prefill is (mostly) free.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from serving.types import GenerationRequest

PREFIX_CHARS = 1024  # how much of the conversation identifies a shared prefix
AFFINITY_ENTRIES = 4096


class Slots(Protocol):
    index: int
    capacity: int


def prefix_key(request: GenerationRequest) -> str:
    """A hash of the conversation's first PREFIX_CHARS characters (roles included).

    Patterns put what their steps share (system text, the question) first, so steps of one
    layer map to the same key and land where that prefix is cached.
    """
    text = "".join(f"<{m.role}>{m.content}" for m in request.messages)[:PREFIX_CHARS]
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Balancer:
    def __init__(self) -> None:
        self.outstanding: dict[tuple[str, int], int] = {}
        self._home: OrderedDict[tuple[str, str], int] = OrderedDict()

    def load(self, model: str, replica: Slots) -> int:
        return self.outstanding.get((model, replica.index), 0)

    def choose(self, model: str, replicas: Sequence[Slots], request: GenerationRequest | None = None) -> Slots:
        best = min(replicas, key=lambda r: (self.load(model, r) / r.capacity, r.index))
        if request is None or len(replicas) == 1:
            return best
        key = (model, prefix_key(request))
        home = self._home.get(key)
        by_index = {r.index: r for r in replicas}
        if home in by_index and self.load(model, by_index[home]) < by_index[home].capacity:
            self._home.move_to_end(key)
            return by_index[home]
        self._home[key] = best.index
        if len(self._home) > AFFINITY_ENTRIES:
            self._home.popitem(last=False)
        return best

    def begin(self, model: str, replica: Slots) -> None:
        k = (model, replica.index)
        self.outstanding[k] = self.outstanding.get(k, 0) + 1

    def end(self, model: str, replica: Slots) -> None:
        self.outstanding[(model, replica.index)] -= 1
