"""`chorus serve-config -c CONFIG [-o FILE]`: a Serve config file for `serve deploy` (and so for a
KubeRay RayService) that runs chorus's request tier from CONFIG.

The application's `import_path` is the builder `orchestrator.runtime.serve_app:build`; its one
argument is the chorus config's path as the cluster's nodes see it (`--config-path` when that
differs from here). When the ModelHosts are absent, the application's replicas have them started
in chorus's placement groups (once, by a named keeper actor) before they serve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from cluster.errors import ConfigError
from orchestrator.service.config import ChorusConfig, load_config

IMPORT_PATH = "orchestrator.runtime.serve_app:build"
SERVE_PORT = 8000  # Serve's own default, for a config whose port is 0 ("a free one" under `chorus up`)


def serve_config(config: ChorusConfig, config_path: str, *, app: str = "chorus") -> dict[str, Any]:
    """The Serve config (a `ray.serve.schema.ServeDeploySchema` document) for `config`."""
    from orchestrator.runtime.serve_app import DEPLOYMENT, deployment_options

    s = config.server
    deployment = {"name": DEPLOYMENT, **deployment_options(config)}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": s.host, "port": s.port or SERVE_PORT},
        "applications": [
            {
                "name": app,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {"config": config_path},
                "deployments": [deployment],
            }
        ],
    }


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve-config",
        help="write a Serve config file for `serve deploy` / KubeRay",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("-c", "--config", required=True, help="the chorus config")
    p.add_argument("-o", "--out", default="-", help="where to write it (default: stdout)")
    p.add_argument("--config-path", help="the chorus config's path on the cluster (default: its absolute path here)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"chorus serve-config: {exc}", file=sys.stderr)
        return 2
    if config.server.port == 0:  # "a free port" has no meaning in a file deployed later
        print(f"chorus serve-config: server.port is 0; the file names Serve's default port {SERVE_PORT}", file=sys.stderr)
    path = args.config_path or str(Path(args.config).resolve())
    document = serve_config(config, path)
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(document)  # what `serve deploy` checks
    text = "# Written by `chorus serve-config`; deploy it with `serve deploy FILE`.\n" + yaml.safe_dump(
        document, sort_keys=False
    )
    if args.out == "-":
        print(text, end="")
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}; deploy it with `serve deploy {args.out}`")
    return 0
