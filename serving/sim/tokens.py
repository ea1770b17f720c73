"""Tokens without a tokenizer: how the simulator counts prompt and answer tokens, and hashes
prompt blocks the way vLLM's prefix cache does.

A whitespace word counts one token per `CHARS_PER_TOKEN` characters (≈1.3 tokens per English
word); each chat message adds 5 ChatML template tokens and the reply header 3.
"""

from __future__ import annotations

import hashlib
import re

from serving.types import GenerationRequest

BLOCK_TOKENS = 16  # vLLM's default KV block size; prefix-cache hits are whole blocks
CHARS_PER_TOKEN = 4
_PIECE = re.compile(rf"\s*\S{{1,{CHARS_PER_TOKEN}}}")


def text_tokens(text: str) -> list[str]:
    """Tokenizer-free tokens: each whitespace word in pieces of CHARS_PER_TOKEN characters."""
    return [w[i : i + CHARS_PER_TOKEN] for w in text.split() for i in range(0, len(w), CHARS_PER_TOKEN)]


def text_pieces(text: str) -> list[str]:
    """`text` cut into tokens as `text_tokens` counts them, keeping the separators, so the
    pieces concatenate back to `text` (a streamed answer's deltas)."""
    return _PIECE.findall(text) or ([text] if text else [])


def prompt_text(request: GenerationRequest) -> str:
    """The prompt as one string: what seeds an answer's generator."""
    return "\n".join(f"{m.role}: {m.content}" for m in request.messages)


def prompt_blocks(request: GenerationRequest) -> tuple[int, list[bytes]]:
    """(prompt tokens, chained hashes of its full BLOCK_TOKENS blocks), as vLLM hashes blocks:
    a block's hash covers every token before it, so equal hashes mean equal prefixes."""
    tokens: list[str] = []
    for m in request.messages:
        # ChatML: 5 template tokens per message, 3 for the reply header generation starts after.
        tokens += ["<|im_start|>", m.role, "\n", *text_tokens(m.content), "<|im_end|>", "\n"]
    tokens += ["<|im_start|>", "assistant", "\n"]
    blocks, h = [], b""
    for i in range(0, len(tokens) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        h = hashlib.blake2b(h + "\x00".join(tokens[i : i + BLOCK_TOKENS]).encode(), digest_size=16).digest()
        blocks.append(h)
    return len(tokens), blocks


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process (Python's own hash() of str is salted)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")
