"""Running patterns over evaluation items, in-process, over models that replay recorded answers.

Every configured model must be `engine: recorded` for an offline run; a pattern that needs a
role bound to anything else (or a step recorded answers cannot play, such as a classifier) is
reported as not evaluable with the reason, and the others still run. Live evaluation through a
deployed fleet (a batch job) is not part of this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cluster.errors import ChorusError, ConfigError, PatternFailed
from orchestrator.core.schema import ChatRequest
from orchestrator.core.trace import Trace
from orchestrator.eval.data import Item
from orchestrator.eval.scorers import ScorerName, right
from orchestrator.patterns import PatternDecision, decision_of
from orchestrator.patterns.kit.embedding import Embedder
from orchestrator.routing.fleet import Fleet
from orchestrator.routing.replicas import LocalReplica, Replica
from orchestrator.service.chorus import Chorus
from orchestrator.service.config import ChorusConfig
from serving.engines.recorded import RecordedEngine


@dataclass(frozen=True)
class Outcome:
    """One item answered by one pattern."""

    item: str
    right: bool
    calls: int
    tokens: int
    gpu_s: float
    latency_s: float  # estimated: the slowest step of each stage, stages in sequence
    escalated: bool
    models: frozenset[str]  # models that answered at least one step
    decision: PatternDecision | None = None  # what the pattern decided; None for a hosted model


@dataclass
class PatternRun:
    name: str
    kind: str
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None  # why the pattern could not be evaluated offline
    wall_s: float = 0.0  # time the offline run took (not a latency figure)
    members: frozenset[str] = frozenset()  # models the pattern may call (itself, for a single model)

    def accuracy(self) -> float:
        return sum(o.right for o in self.outcomes) / len(self.outcomes) if self.outcomes else 0.0


async def recorded_fleet(config: ChorusConfig) -> Fleet:
    """One started in-process replica per recorded model; live models are left out."""
    replicas: dict[str, list[Replica]] = {}
    for spec in config.models:
        if spec.engine != "recorded":
            continue
        engine = RecordedEngine(spec)
        await engine.start()
        replicas[spec.name] = [LocalReplica(engine, gpus=spec.recording().gpus, capacity=1 << 20)]
    if not replicas:
        raise ConfigError(
            "<config>", "models", "chorus eval runs offline over models with engine: recorded, and this config has none"
        )
    return Fleet(replicas)


def estimated_latency(trace: Trace) -> float:
    """Steps named alike ('member[0]', 'member[1]') run together; stages run one after another."""
    stages: dict[str, float] = {}
    for step in trace.steps:
        stage = step.name.split("[", 1)[0]
        stages[stage] = max(stages.get(stage, 0.0), step.engine_seconds)
    return sum(stages.values())


def _outcome(item: Item, scorer: ScorerName, text: str, trace: Trace) -> Outcome:
    t = trace.totals
    return Outcome(
        item=item.id,
        right=right(scorer, item, text),
        calls=t.model_calls,
        tokens=t.prompt_tokens + t.completion_tokens,
        gpu_s=t.gpu_seconds,
        latency_s=estimated_latency(trace),
        escalated=t.escalated,
        models=frozenset(s.model for s in trace.steps if s.error is None),
        decision=decision_of(trace),
    )


async def run_pattern(
    chorus: Chorus, name: str, kind: str, items: Sequence[Item], scorer: ScorerName, concurrency: int = 64
) -> PatternRun:
    """`name` (a pattern or a hosted model) over every item. A pattern that cannot run offline
    stops at its first such error, which is kept as the reason."""
    run = PatternRun(name, kind)
    gate = asyncio.Semaphore(concurrency)
    failed: list[str] = []

    async def one(item: Item) -> Outcome | None:
        if failed:
            return None
        async with gate:
            try:
                reply = await chorus.chat(ChatRequest(model=name, messages=item.messages()))
            except ChorusError as exc:
                # A pattern whose every path failed on an item (all members' records empty) is a
                # wrong answer; anything else (a role with no records) means it cannot run offline.
                if isinstance(exc, PatternFailed):
                    return Outcome(item.id, False, 0, 0, 0.0, 0.0, False, frozenset())
                failed.append(f"{type(exc).__name__}: {exc}")
                return None
        return _outcome(item, scorer, reply.text, reply.trace)

    results = await asyncio.gather(*(one(i) for i in items))
    if failed:
        run.error = failed[0]
        return run
    run.outcomes = [r for r in results if r is not None]
    return run


def models_of(config: ChorusConfig, name: str) -> frozenset[str]:
    """Every model a pattern may call, through the patterns it runs too."""
    spec = config.patterns.get(name)
    if spec is None:
        return frozenset({name})
    models = {config.roles[r] for r in spec.roles()}
    for used in spec.uses():
        models |= models_of(config, used)
    return frozenset(models)


class Evaluator:
    """A `Chorus` over recorded engines, built once per config and reused for every pattern."""

    def __init__(self, config: ChorusConfig, fleet: Fleet, embedder: Embedder | None = None) -> None:
        self.config = config
        self.chorus = Chorus(config, fleet, embedder=embedder)

    @staticmethod
    async def create(config: ChorusConfig, embedder: Embedder | None = None) -> Evaluator:
        return Evaluator(config, await recorded_fleet(config), embedder)

    def with_config(self, config: ChorusConfig) -> Evaluator:
        """The same started engines under another config (calibration tries many)."""
        return Evaluator(config, self.chorus.fleet, self.chorus.embedder)

    def models(self) -> list[str]:
        return self.chorus.fleet.models()

    async def run(self, names: Sequence[str], items: Sequence[Item], scorer: ScorerName) -> list[PatternRun]:
        runs = []
        for name in names:
            spec = self.config.patterns.get(name)
            kind = spec.kind if spec is not None else "model"
            members = models_of(self.config, name)
            live = sorted(members - set(self.models()))
            if live:
                error = f"calls live model(s) {', '.join(live)}; chorus eval replays engine: recorded models only"
                runs.append(PatternRun(name, kind, error=error, members=members))
                continue
            t0 = time.perf_counter()
            run = await run_pattern(self.chorus, name, kind, items, scorer)
            run.wall_s = time.perf_counter() - t0
            run.members = members
            runs.append(run)
        return runs
