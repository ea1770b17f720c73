"""`chorus eval`: how right each pattern is, and what it costs, on a data set.

    chorus eval -c CONFIG --data FILE [--patterns a,b,…] [--out DIR] [--scorer numeric|choice|exact]
                [--margin 0.01] [--calibrate [--target 0.95]] [--policy-out FILE]

Runs in-process over models with `engine: recorded` (answers recorded once from real models),
so no GPU is used; every hosted model also runs on its own as a baseline. `--calibrate` fits
vote weights, tie order and consensus thresholds on one half of the data and reports them on
the other, writing `calibration.json` and a config patch `calibrated.yaml` to apply by hand.
`--policy-out` writes the adaptive pattern's policy learned from the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.eval.data import Item
    from orchestrator.eval.runner import PatternRun


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="accuracy and cost of patterns on recorded answers (offline)")
    p.add_argument("-c", "--config", required=True, help="a config whose models have engine: recorded")
    p.add_argument("--data", required=True, help="JSONL of items: question, options?, gold, category?")
    p.add_argument("--patterns", default="", help="comma-separated patterns (default: every configured pattern)")
    p.add_argument("--out", default="eval-out", help="folder for results.json, report.md and the PNG")
    p.add_argument("--scorer", choices=["numeric", "choice", "exact"], default=None, help="default: from the data")
    p.add_argument("--margin", type=float, default=0.01, help="recommend the cheapest pattern within this of the best")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--calibrate", action="store_true", help="fit weights, tie order and thresholds; report on held-out half")
    p.add_argument("--target", type=float, default=0.95, help="calibration: share of the strong model's accuracy to reach")
    p.add_argument("--policy-out", default=None, help="write the adaptive policy learned from these results")
    p.add_argument("--title", default="", help="title of the PNG")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from cluster.errors import ChorusError

    try:
        return asyncio.run(_eval(args))
    except ChorusError as exc:
        print(f"chorus eval: {exc}", file=sys.stderr)
        return 2


async def _eval(args: argparse.Namespace) -> int:
    from orchestrator.eval import report as reporting
    from orchestrator.eval.calibrate import calibrate, write_calibration
    from orchestrator.eval.data import load_items
    from orchestrator.eval.runner import Evaluator
    from orchestrator.eval.scorers import default_scorer
    from orchestrator.service.config import load_config

    config = load_config(args.config)
    items = load_items(args.data, args.limit)
    scorer = args.scorer or default_scorer(items)
    names = [n for n in args.patterns.split(",") if n] or list(config.patterns)
    unknown = sorted(set(names) - set(config.patterns))
    if unknown:
        print(f"chorus eval: no pattern(s) {', '.join(unknown)} in {args.config}", file=sys.stderr)
        return 2
    evaluator = await Evaluator.create(config)
    out = Path(args.out)
    runs = await evaluator.run([*evaluator.models(), *names], items, scorer)
    report = reporting.summarize(runs, args.data, scorer, args.margin)
    reporting.write(report, out, args.title)
    print(reporting.markdown(report))
    if args.policy_out:
        _write_policy(args, runs, items, out)
    if args.calibrate:
        result = await calibrate(evaluator, items, scorer, names, args.target)
        write_calibration(result, out)
        print(result.markdown())
    print(f"written: {out}/results.json, report.md, accuracy_vs_cost.png")
    return 0


def _write_policy(args: argparse.Namespace, runs: list[PatternRun], items: list[Item], out: Path) -> None:
    """The learned policy (--policy-out) and its check on the held-out half (policy_held_out.json)."""
    from orchestrator.eval.policy import held_out, learn_policy

    policy = learn_policy(runs, items, args.margin)
    Path(args.policy_out).write_text(json.dumps(policy.model_dump(mode="json"), indent=2) + "\n")
    check = held_out(runs, items, args.margin)
    (out / "policy_held_out.json").write_text(json.dumps(asdict(check), indent=2) + "\n")
    name, best = check.best_fixed()
    print(
        f"adaptive policy: {args.policy_out}; learned on the calibration half and followed on the test half: "
        f"{check.policy.accuracy:.1%} at {check.policy.gpu_s:.2f} GPU-s/q "
        f"(best fixed pattern {name}: {best.accuracy:.1%} at {best.gpu_s:.2f})"
    )
