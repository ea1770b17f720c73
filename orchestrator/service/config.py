"""A chorus config: models, roles bound to them, placement, named patterns and the HTTP server.

`load_config(path)` reads YAML into `ChorusConfig`; every problem becomes a `ConfigError` that
names the file, the field path (`patterns.router.routes.code.role`) and what to change.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from cluster.errors import ConfigError
from cluster.spec import ModelSpec, PlacementSpec, Strict
from orchestrator.core.budget import Budget
from orchestrator.patterns import PatternSpec
from orchestrator.patterns.kit.assembly import check_references
from orchestrator.routing.health import HealingSpec
from serving.types import Coalesce, Sampling


class AutoscalingSpec(Strict):
    """Serve's autoscaling for the orchestrator deployment (replaces `num_replicas`)."""

    min_replicas: int = Field(1, ge=0, le=1024, description="Fewest orchestrator replicas kept running.")
    max_replicas: int = Field(4, ge=1, le=1024, description="Most orchestrator replicas Serve may start.")
    target_ongoing_requests: float = Field(
        16.0, gt=0, le=10_000, description="Requests in flight per replica that Serve scales to keep."
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} exceeds max_replicas {self.max_replicas}")
        return self


class ServerSpec(Strict):
    """The request tier: the Ray Serve application serving the OpenAI API and the Python client."""

    host: str = Field("127.0.0.1", description="Address Serve's HTTP proxy binds; 0.0.0.0 exposes it to the network.")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port; 0 picks a free one.")
    num_replicas: int = Field(1, ge=1, le=1024, description="Orchestrator replicas (stateless; any serves any request).")
    autoscaling: AutoscalingSpec | None = Field(
        None, description="Let Serve scale the orchestrator replicas instead of a fixed `num_replicas`."
    )
    max_ongoing_requests: int = Field(
        1024, ge=1, le=100_000, description="Requests one orchestrator replica holds at once; Serve queues the rest."
    )
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted bearer tokens; with none (here, in the env var or the file) every request is accepted."
    )
    api_keys_env: str | None = Field(
        None, description="Name of an environment variable holding accepted keys, comma-separated (read by each replica)."
    )
    api_keys_file: str | None = Field(
        None, description="A file holding accepted keys, one per line (read by each replica; relative to the config)."
    )
    protect_docs: bool = Field(
        True, description="With API keys set, /docs, /redoc and /openapi.json need a key too."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (e.g. https://app.example.com); empty turns CORS off."
    )
    max_request_bytes: int = Field(1 << 20, ge=1024, le=1 << 30, description="Larger request bodies get HTTP 413.")
    body_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="A request body not fully received after this long gets HTTP 503 (retry)."
    )
    request_timeout_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="Default deadline of a request (its own `timeout_s` overrides it): past it the request's "
        "engine work is aborted and it gets HTTP 504.",
    )
    json_logs: bool = Field(False, description="Write the orchestrator's logs as JSON lines (with request ids).")

    @field_validator("api_keys")
    @classmethod
    def _no_blank_keys(cls, keys: list[str]) -> list[str]:
        if any(not k.strip() for k in keys):
            raise ValueError("an API key is empty; remove it or give it a value")
        return keys


class ChorusConfig(Strict):
    models: list[ModelSpec] = Field(min_length=1, description="Models to host.")
    roles: dict[str, str] = Field(description="Role → model name. Patterns address roles, never models.")
    placement: dict[str, PlacementSpec] = Field(
        default_factory=dict, description="Model name → replicas and GPU share; a missing model gets the defaults."
    )
    patterns: dict[str, PatternSpec] = Field(default_factory=dict, description="Pattern name → definition.")
    sampling: Sampling = Field(
        Sampling(), description="Defaults for every model call; a request's own fields override them."
    )
    budget: Budget = Field(Budget(), description="Default per-request budget.")
    healing: HealingSpec = Field(HealingSpec(), description="Health probes, restarts and drain of model replicas.")
    streaming: Coalesce = Field(
        Coalesce(),
        description="How streamed tokens are batched before they cross Ray (the first at once, then a message "
        "per max_items pieces or per max_wait_s, whichever comes first).",
    )
    server: ServerSpec = ServerSpec()

    @model_validator(mode="after")
    def _references(self) -> ChorusConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        for role, model in self.roles.items():
            if model not in names:
                raise ValueError(f"roles.{role} names model '{model}', which is not under models: ({', '.join(names)})")
        for model in self.placement:
            if model not in names:
                raise ValueError(f"placement.{model} names no model under models: ({', '.join(names)})")
        for pname, spec in self.patterns.items():
            if pname in names:
                raise ValueError(f"patterns.{pname} has the name of a hosted model; requests could not tell them apart")
            missing = sorted(spec.roles() - set(self.roles))
            if missing:
                raise ValueError(
                    f"patterns.{pname} uses role(s) {', '.join(missing)} that roles: does not bind; "
                    f"add e.g. `{missing[0]}: {names[0]}` under roles:"
                )
        return self

    def placement_of(self, model: str) -> PlacementSpec:
        return self.placement.get(model) or PlacementSpec()

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)


def _field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as the YAML path a user edits."""
    parts = list(loc)
    # A discriminated union puts the member's tag after the key: patterns.<name>.<kind>.field.
    if len(parts) > 2 and parts[0] == "patterns":
        del parts[2]
    return ".".join(str(p) for p in parts if not (isinstance(p, str) and "[" in p))


def _resolve_sources(config: ChorusConfig, base: Path) -> ChorusConfig:
    """Local model folders are relative to the config file; hub ids stay as they are."""
    models = []
    for m in config.models:
        src = m.source
        if src.startswith(("./", "../", "/", "~")):
            src = str((base / Path(src).expanduser()).resolve())
        models.append(m.model_copy(update={"source": src}))
    server = config.server
    if server.api_keys_file is not None:
        keys = base / Path(server.api_keys_file).expanduser()
        server = server.model_copy(update={"api_keys_file": str(keys.resolve())})
    return config.model_copy(update={"models": models, "server": server})


def parse_config(data: object, file: str = "<config>", base: Path | None = None) -> ChorusConfig:
    if not isinstance(data, dict):
        raise ConfigError(file, "", "the file must hold a YAML mapping with models:, roles:, placement:, patterns:")
    try:
        config = ChorusConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = _field_path(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; check its spelling and indentation"
        elif err["type"] == "union_tag_invalid":
            msg = f"{msg}; pick one of the pattern kinds listed"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(file, path, msg + more) from None
    check_references(config.patterns, file)
    return _resolve_sources(config, base or Path.cwd())


def load_config(path: str | Path) -> ChorusConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"not valid YAML: {exc}") from None
    return parse_config(data, str(path), path.parent)
