"""`chorus plan`: place a config's models on GPUs and cores, print the plan, write it as editable YAML.

    chorus plan -c CONFIG [--gpus auto|ray|SPEC] [-o OUT.yaml | -o -] [--ceiling 0.9]
    chorus plan --check CONFIG [--gpus auto|ray|SPEC]

--gpus auto reads this machine's GPUs through NVML; `ray` the GPU nodes of the running Ray
cluster (memory from NVML here, or --gpu-memory); a spec plans ahead: 1xH100-80GB,
8xH100-80GB, 2x4xA100-40GB (nodes × GPUs), 1xRTX4090-24GB. The written YAML is the config
with a `placement:` section that pins every replica (its GPUs and the cores its engine
threads are bound to: a GPU's NUMA cores where NVML says, this machine's cores for CPU models); `--check` validates such a section
(hand-edited or not) with the planner's rules. Exit status: 0 fine, 1 the plan or check
failed, 2 the config or arguments are wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from cluster import inventory as inv
from cluster.errors import ClusterError, ConfigError
from cluster.placement.cpus import nodes_of, plan_cpus, render_cpus
from cluster.placement.demand import model_demands
from cluster.placement.planner import DEFAULT_CEILING, plan_placement
from cluster.placement.report import render_config, render_cpu_config, render_table
from cluster.placement.validate import check
from orchestrator.service.config import ChorusConfig, load_config


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "plan",
        help="place the models of a config on GPUs and write the placement",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("-c", "--config", help="config to plan (its placement: targets are kept)")
    p.add_argument("--check", metavar="CONFIG", help="validate the placement: section of CONFIG instead")
    p.add_argument("--gpus", default="auto", help="auto (NVML), ray (running cluster) or a spec like 8xH100-80GB")
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                   help="GPU memory in GiB for --gpus ray when NVML cannot tell")
    p.add_argument("-o", "--out", help="where to write the planned config (default CONFIG.plan.yaml; - for stdout)")
    p.add_argument("--ceiling", type=float, default=DEFAULT_CEILING,
                   help=f"most of a GPU the shares on it may sum to (default {DEFAULT_CEILING})")
    p.add_argument("--request-cpus", type=int, default=None, metavar="N",
                   help="cores per node kept for the request tier (default: 1 per 8 cores on nodes of 4 or more)")
    p.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="cores per node where the inventory does not say (a --gpus SPEC); default: this machine's")
    p.set_defaults(func=run)


def gpu_inventory(gpus: str, gpu_memory_gib: float | None = None) -> inv.Inventory:
    if gpus == "auto":
        return inv.from_nvml()
    if gpus == "ray":
        local = inv.from_nvml()
        if gpu_memory_gib is not None:
            memory, name = int(gpu_memory_gib * inv.GiB), "GPU"
        elif local.nodes:
            memory, name = local.nodes[0].gpus[0].total_bytes, local.nodes[0].gpus[0].name
        else:
            raise ClusterError("--gpus ray needs --gpu-memory GB: NVML sees no GPU here to read it from")
        import ray  # only for this option; chorus's Ray glue lives in cluster.runtime

        from cluster.runtime.nodes import ray_inventory

        ray.init(address="auto", include_dashboard=False, logging_level=logging.ERROR)
        try:
            return ray_inventory(memory, name)
        finally:
            ray.shutdown()
    return inv.from_spec(gpus)


def run(args: argparse.Namespace) -> int:
    path = args.check or args.config
    if not path:
        print("chorus plan: give -c CONFIG to plan or --check CONFIG to validate", file=sys.stderr)
        return 2
    if not 0.0 < args.ceiling <= 1.0:
        print(f"chorus plan: --ceiling {args.ceiling} must be in (0, 1]", file=sys.stderr)
        return 2
    try:
        config = load_config(path)
        gpus = gpu_inventory(args.gpus, args.gpu_memory)
    except (ConfigError, ClusterError) as exc:
        print(f"chorus plan: {exc}", file=sys.stderr)
        return 2
    on_cpu = all(not config.placement_of(m.name).on_gpu for m in config.models)
    if not gpus.nodes and on_cpu and not args.check:
        return _plan_cpu_only(args, config, path, gpus.reason)
    if not gpus.nodes:
        print(f"chorus plan: {gpus.reason}; plan ahead with --gpus SPEC, e.g. --gpus 1xH100-80GB", file=sys.stderr)
        return 2
    if args.check:
        return _check(config, gpus, args.ceiling, path)
    try:
        demands = model_demands(config.models, config.placement, config.roles)
        result = plan_placement(demands, gpus, ceiling=args.ceiling)
    except ClusterError as exc:
        print(f"chorus plan: {exc}", file=sys.stderr)
        return 1
    memory = {d.name: d.memory for d in demands}
    print(render_table(result, memory))
    names = [m.name for m in config.models]
    try:
        cores = plan_cpus(names, result.placement_specs(config.placement), nodes_of(gpus, _cores(args)), request_cpus=args.request_cpus)
    except ClusterError as exc:
        print(f"chorus plan: {exc}", file=sys.stderr)
        return 1
    print(render_cpus(cores))
    raw = yaml.safe_load(Path(path).read_text())
    header = f"# Placement planned by `chorus plan --gpus {args.gpus}` for {gpus.describe()}.\n"
    text = render_config(raw, result, memory, config.placement, header=header, cpus=cores.sets())
    out = args.out or str(Path(path).with_suffix("")) + ".plan.yaml"
    if out == "-":
        print(text)
    else:
        Path(out).write_text(text)
        print(f"\nwrote {out}; check an edited copy with `chorus plan --check {out} --gpus {args.gpus}`")
    return 0


def _cores(args: argparse.Namespace) -> tuple[int, ...] | None:
    return tuple(range(args.cpus)) if args.cpus else None


def _plan_cpu_only(args: argparse.Namespace, config: ChorusConfig, path: str, reason: str) -> int:
    """No GPU here and every model on CPU: plan this machine's cores only."""
    names = [m.name for m in config.models]
    try:
        cores = plan_cpus(names, config.placement, nodes_of(None, _cores(args)), request_cpus=args.request_cpus)
    except ClusterError as exc:
        print(f"chorus plan: {exc}", file=sys.stderr)
        return 1
    n = len(cores.nodes[0].cpus)
    print(f"GPUs: none ({reason}); every model runs on CPU: planning this machine's {n} core(s)")
    print(render_cpus(cores))
    raw = yaml.safe_load(Path(path).read_text())
    header = f"# Cores planned by `chorus plan` for this machine's {n} core(s).\n"
    text = render_cpu_config(raw, cores.sets(), header=header)
    out = args.out or str(Path(path).with_suffix("")) + ".plan.yaml"
    if out == "-":
        print(text)
    else:
        Path(out).write_text(text)
        print(f"\nwrote {out}")
    return 0


def _check(config: ChorusConfig, gpus: inv.Inventory, ceiling: float, path: str) -> int:
    problems = check(config.models, config.placement, gpus, ceiling=ceiling)
    for p in problems:
        print(f"{path}: {p}")
    errors = [p for p in problems if p.severity == "error"]
    if not errors:
        print(f"{path}: placement fits {gpus.describe()}" + (f" ({len(problems)} warning(s))" if problems else ""))
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chorus")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
