"""How well sentence similarity tells agreeing answers from disagreeing ones, on real answers.

For questions of ../shared/quality, every pair of answers to the same question from three
models is labelled 'agree' (same extracted final answer) or 'disagree'; MiniLM's cosine
similarity of the two answers is compared with that label. Prints the mean similarity of each
kind and the pair accuracy at each threshold (the best one is what `similarity:` would be
calibrated to), and writes docs/bench/semantic_similarity.json.

    python scripts/bench_semantic_similarity.py [--questions 200]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Import chorus from this checkout, whichever one the environment's editable install names.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.patterns.kit.embedding import MiniLMEmbedder
from orchestrator.patterns.kit.extract import extract_choice, extract_number

ROOT = Path(__file__).resolve().parents[1]
QUALITY = ROOT.parent / "shared" / "quality"
THRESHOLDS = [round(t, 2) for t in np.arange(0.5, 1.0, 0.05)]


def measure(
    embedder: MiniLMEmbedder, path: Path, models: list[str], key: Callable[[str], str | None], questions: int
) -> dict[str, object]:
    rows = [json.loads(line) for line in path.read_text().split("\n") if line.strip()]
    random.Random(0).shuffle(rows)
    texts, labels = [], []
    for row in rows[:questions]:
        for model in models:
            answer = row["answers"].get(model) or ""
            value = key(answer)
            if answer and value is not None:
                texts.append(answer)
                labels.append((row["id"], value))
    t0 = time.perf_counter()
    vectors = np.asarray(embedder.embed(texts))
    embed_s = time.perf_counter() - t0
    by_question: dict[str, list[int]] = {}
    for i, (qid, _) in enumerate(labels):
        by_question.setdefault(qid, []).append(i)
    agree, disagree = [], []
    for members in by_question.values():
        for i, j in itertools.combinations(members, 2):
            (agree if labels[i][1] == labels[j][1] else disagree).append(float(vectors[i] @ vectors[j]))
    a, d = np.asarray(agree), np.asarray(disagree)
    accuracy = {t: float(((a >= t).sum() + (d < t).sum()) / (len(a) + len(d))) for t in THRESHOLDS}
    best = max(accuracy, key=lambda t: accuracy[t])
    return {
        "data": path.name, "models": models, "answers": len(texts), "embed_s": round(embed_s, 1),
        "agreeing_pairs": len(a), "disagreeing_pairs": len(d),
        "mean_similarity_agreeing": round(float(a.mean()), 3), "mean_similarity_disagreeing": round(float(d.mean()), 3),
        "pair_accuracy_by_threshold": accuracy, "best_threshold": best, "best_pair_accuracy": accuracy[best],
        "all_agree_baseline": round(len(a) / (len(a) + len(d)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    embedder = MiniLMEmbedder()
    results = [
        measure(embedder, QUALITY / "gsm8k-dev.jsonl", ["gpt-4o-mini", "gpt-3.5-turbo-0613", "Mixtral-8x7B-Instruct"],
                extract_number, args.questions),
        measure(embedder, QUALITY / "mmlupro-dev.jsonl",
                ["gemini-1.5-flash-002", "Meta-Llama-3_1-70B-Instruct", "Qwen1.5-110B"], extract_choice, args.questions),
    ]
    for r in results:
        print(
            f"{r['data']}: agreeing pairs {r['mean_similarity_agreeing']}, disagreeing {r['mean_similarity_disagreeing']}; "
            f"best threshold {r['best_threshold']} → pair accuracy {r['best_pair_accuracy']:.1%} "
            f"(calling every pair 'agree': {r['all_agree_baseline']:.1%})"
        )
    out = ROOT / "docs" / "bench" / "semantic_similarity.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
