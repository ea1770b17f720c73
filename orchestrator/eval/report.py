"""What `chorus eval` reports: per pattern accuracy (95 % bootstrap interval), the paired
difference to the best single model and its significance, cost (model calls, tokens,
GPU-seconds, estimated latency), the Pareto front of accuracy against GPU-seconds, and a
recommendation: the cheapest pattern within `margin` of the best accuracy.

Written as `results.json`, `report.md` and `accuracy_vs_cost.png` in the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.eval.runner import PatternRun
from orchestrator.eval.stats import Interval, bootstrap_accuracy, mcnemar_p, paired_difference


@dataclass(frozen=True)
class Summary:
    name: str
    kind: str
    n: int
    accuracy: Interval
    vs_best_single: Interval | None  # accuracy minus the best single model's, paired
    p_value: float | None  # McNemar, against the best single model
    calls: float  # per question
    tokens: float
    gpu_s: float
    latency_s: float
    escalated: float  # share of questions escalated
    strongest_share: float  # share of questions the strongest single model answered a step of
    pareto: bool = False
    error: str | None = None
    best_member: str | None = None  # the most accurate model the pattern calls (evaluated alone)
    vs_best_member: Interval | None = None  # accuracy minus that model's, paired
    p_member: float | None = None  # McNemar, against that model


@dataclass(frozen=True)
class Report:
    data: str
    scorer: str
    best_single: str | None
    margin: float
    summaries: list[Summary]
    recommendation: str | None
    recommendation_why: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(runs: Sequence[PatternRun], data: str, scorer: str, margin: float = 0.01) -> Report:
    ok = [r for r in runs if r.error is None and r.outcomes]
    singles = [r for r in ok if r.kind == "model"]
    best = max(singles, key=lambda r: r.accuracy(), default=None)
    best_right = {o.item: o.right for o in best.outcomes} if best else {}
    summaries = []
    for run in runs:
        if run.error is not None or not run.outcomes:
            summaries.append(
                Summary(run.name, run.kind, 0, Interval(0, 0, 0), None, None, 0, 0, 0, 0, 0, 0, error=run.error)
            )
            continue
        right = [o.right for o in run.outcomes]
        vs, p = None, None
        if best is not None and run is not best:
            paired = [best_right[o.item] for o in run.outcomes]
            vs, p = paired_difference(right, paired), mcnemar_p(right, paired)
        member = max((s for s in singles if s.name in run.members and s is not run), key=lambda r: r.accuracy(), default=None)
        vs_member, p_member = None, None
        if member is not None:
            member_right = {o.item: o.right for o in member.outcomes}
            paired_member = [member_right[o.item] for o in run.outcomes]
            vs_member, p_member = paired_difference(right, paired_member), mcnemar_p(right, paired_member)
        summaries.append(
            Summary(
                best_member=member.name if member else None,
                vs_best_member=vs_member,
                p_member=p_member,
                name=run.name,
                kind=run.kind,
                n=len(run.outcomes),
                accuracy=bootstrap_accuracy(right),
                vs_best_single=vs,
                p_value=p,
                calls=_mean([o.calls for o in run.outcomes]),
                tokens=_mean([o.tokens for o in run.outcomes]),
                gpu_s=_mean([o.gpu_s for o in run.outcomes]),
                latency_s=_mean([o.latency_s for o in run.outcomes]),
                escalated=_mean([float(o.escalated) for o in run.outcomes]),
                strongest_share=_mean([float(best is not None and best.name in o.models) for o in run.outcomes]),
            )
        )
    summaries = _mark_pareto(summaries)
    name, why = recommend(summaries, margin)
    return Report(data, scorer, best.name if best else None, margin, summaries, name, why)


def _mark_pareto(summaries: list[Summary]) -> list[Summary]:
    """On the front: no other pattern is at most as costly and at least as accurate, one strictly."""
    ok = [s for s in summaries if s.error is None]

    def dominated(s: Summary) -> bool:
        return any(
            o.gpu_s <= s.gpu_s and o.accuracy.value >= s.accuracy.value
            and (o.gpu_s < s.gpu_s or o.accuracy.value > s.accuracy.value)
            for o in ok
        )

    from dataclasses import replace

    return [replace(s, pareto=s.error is None and not dominated(s)) for s in summaries]


def recommend(summaries: Sequence[Summary], margin: float) -> tuple[str | None, str]:
    """The cheapest pattern (GPU-seconds, then calls) within `margin` of the best accuracy."""
    ok = [s for s in summaries if s.error is None]
    if not ok:
        return None, "nothing could be evaluated"
    top = max(ok, key=lambda s: s.accuracy.value)
    near = [s for s in ok if s.accuracy.value >= top.accuracy.value - margin]
    pick = min(near, key=lambda s: (s.gpu_s, s.calls))
    why = (
        f"{pick.name}: accuracy {pick.accuracy.value:.1%}, within {margin:.1%} of the best ({top.name}, "
        f"{top.accuracy.value:.1%}), at {pick.gpu_s:.2f} GPU-s per question"
    )
    if pick is not top and top.gpu_s > 0:
        why += f" ({top.gpu_s / max(pick.gpu_s, 1e-12):.1f}x less than {top.name})"
    if pick.vs_best_member is not None and pick.p_member is not None:
        d, p = pick.vs_best_member.value, pick.p_member
        verdict = "beats" if d > 0 else "is worse than"
        if p >= 0.05:
            verdict = "is not significantly different from"
        why += f"; it {verdict} its best member alone, {pick.best_member} ({d:+.1%}, McNemar p = {p:.3f})"
    return pick.name, why


def markdown(report: Report) -> str:
    lines = [
        f"Data: `{report.data}`, scorer `{report.scorer}`; best single model: `{report.best_single}`.",
        "",
        (
            "| pattern | kind | n | accuracy (95 % CI) | vs best single (95 % CI) | p | vs its best member (p) "
            "| calls/q | tokens/q | GPU-s/q | est. latency s | escalated | strongest model asked | Pareto |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.summaries:
        if s.error is not None:
            lines.append(f"| {s.name} | {s.kind} | – | not evaluable offline: {s.error} | | | | | | | | | | |")
            continue
        a = s.accuracy
        vs = "–" if s.vs_best_single is None else (
            f"{s.vs_best_single.value:+.1%} ({s.vs_best_single.low:+.1%}, {s.vs_best_single.high:+.1%})"
        )
        p = "–" if s.p_value is None else f"{s.p_value:.3f}"
        member = "–" if s.vs_best_member is None else (
            f"{s.vs_best_member.value:+.1%} vs {s.best_member} ({s.p_member:.3f})"
        )
        lines.append(
            f"| {s.name} | {s.kind} | {s.n} | {a.value:.1%} ({a.low:.1%}–{a.high:.1%}) | {vs} | {p} | {member} | "
            f"{s.calls:.2f} | {s.tokens:.0f} | {s.gpu_s:.2f} | {s.latency_s:.1f} | {s.escalated:.0%} | "
            f"{s.strongest_share:.0%} | {'●' if s.pareto else ''} |"
        )
    lines += ["", f"Recommendation (cheapest within {report.margin:.1%} of the best): {report.recommendation_why}."]
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [s for s in report.summaries if s.error is None]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for s in ok:
        colour = "tab:blue" if s.kind == "model" else "tab:orange"
        ax.errorbar(
            s.gpu_s, s.accuracy.value,
            yerr=[[s.accuracy.value - s.accuracy.low], [s.accuracy.high - s.accuracy.value]],
            fmt="o", color=colour, ms=5, capsize=2, alpha=0.85,
        )
        ax.annotate(s.name, (s.gpu_s, s.accuracy.value), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = sorted((s for s in ok if s.pareto), key=lambda s: s.gpu_s)
    ax.plot([s.gpu_s for s in front], [s.accuracy.value for s in front], "--", color="tab:green", label="Pareto front")
    ax.scatter([], [], color="tab:blue", label="single model")
    ax.scatter([], [], color="tab:orange", label="pattern")
    ax.set_xlabel("GPU-seconds per question (estimated from recorded answers)")
    ax.set_ylabel("accuracy (95 % bootstrap interval)")
    ax.set_title(title or f"{Path(report.data).name}: accuracy against cost")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: Report, out: Path, title: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "accuracy_vs_cost.png", title)
