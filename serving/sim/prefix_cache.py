"""The simulated engine's prefix cache: prompt blocks by chained hash, LRU, bounded by free KV."""

from __future__ import annotations

from collections import OrderedDict

from serving.sim.tokens import BLOCK_TOKENS


class PrefixCache:
    """Which prompt blocks have KV cached, as vLLM's automatic prefix caching keeps them.

    A prompt's blocks enter when its prefill finishes; the least recently used leave when the
    running sequences need the room. `enabled=False` never hits.
    """

    def __init__(self, *, enabled: bool, capacity_tokens: int) -> None:
        self.enabled = enabled
        self.capacity_tokens = capacity_tokens
        self._blocks: OrderedDict[bytes, None] = OrderedDict()  # least recently used first

    def lookup(self, blocks: list[bytes], prompt_tokens: int) -> int:
        """Prompt tokens whose KV blocks are cached: the leading run of hits, whole blocks, and
        never the last prompt token (its logits must be computed)."""
        if not self.enabled:
            return 0
        hits = 0
        for h in blocks:
            if h not in self._blocks:
                break
            self._blocks.move_to_end(h)
            hits += 1
        return min(hits * BLOCK_TOKENS, (prompt_tokens - 1) // BLOCK_TOKENS * BLOCK_TOKENS)

    def insert(self, blocks: list[bytes], *, tokens_in_use: int) -> None:
        """Cache a prompt's full blocks; evict the least recently used beyond the KV that the
        running sequences (`tokens_in_use`) leave free."""
        if not self.enabled:
            return
        for h in blocks:
            self._blocks[h] = None
            self._blocks.move_to_end(h)
        room = max(0, (self.capacity_tokens - tokens_in_use) // BLOCK_TOKENS)
        while len(self._blocks) > room:
            self._blocks.popitem(last=False)
