"""Every error chorus raises on purpose, in one tree.

It lives in the lowest layer so that every layer raises from the same root; each layer raises
only its own branch, and each boundary translates once (Ray's wrappers at the Ray handles, the
tree to HTTP statuses in `orchestrator.api.errors`).

    ChorusError
    ├── ConfigError            a config file is wrong: names the file, the field and the fix
    ├── ClusterError           where models run
    │   ├── GpuSpecError       a GPU spec string such as `2x4xA100-40GB` cannot be read
    │   ├── SizingError        a model's memory cannot be estimated (no config.json, no catalog)
    │   ├── PlacementError     a model cannot be placed: what it needs, the largest space, fixes
    │   └── DeployError        a model could not be started (names it and says why)
    ├── RequestError           the caller asked for something invalid                  → 400
    │   ├── UnknownModelError  `model` names no pattern and no hosted model            → 404
    │   ├── UnknownResponse    feedback names a response chorus did not keep           → 404
    │   ├── BudgetExceeded     the request's budget ran out before an answer           → 400
    │   ├── PromptTooLong      the prompt does not fit the model's context             → 400
    │   ├── NotRecorded        a recorded-answers model has no answer for this prompt  → 400
    │   ├── Unsupported        a request field this pattern cannot honour (names it)   → 400
    │   └── EngineRejected     vLLM's OpenAI layer refused the request (its status)    → 4xx
    ├── OverloadedError        every replica of a needed model is full; retry after    → 429
    │   └── QueueFull          one replica's wait queue is at its bound
    ├── UnavailableError       nothing can serve the request now; retry after          → 503
    │   ├── NotRunning         no chorus is reachable at the given address
    │   ├── NoHealthyReplica   every replica of a model is down or restarting (names the model)
    │   └── Draining           chorus is shutting down and admits no new request
    ├── DeadlineExceeded       the request ran past its `timeout_s` (default `server.request_timeout_s`);
    │                          its engine work was aborted                              → 504
    ├── EngineError            an engine fault: the engine failed, its replica died or timed out.
    │   │                      A pattern's member call that hits one is a failed member.
    │   └── ReplicaLost        the replica's process died or restarted, or its engine is not
    │                          serving; no token reached the caller, so another replica may retry it
    ├── StepFailed             a model call failed and the pattern could not do without it → 500
    │   └── PatternFailed      the pattern could not produce an answer at all          → 500
    └── JobError               a batch job cannot start or go on (before any row is lost)
        ├── JobInputError      the input file is unusable: not JSONL, duplicate custom_ids…
        └── JobOutputBusy      another job is writing to the same output folder

Anything else (an AttributeError in an engine, a bug in a pattern) is a programming error: it is
never turned into a failed member; it fails the request with a 500 and a logged traceback.

Every class keeps its constructor arguments as plain values (str, int, float, tuples of str) in
`args`, so it pickles and crosses Ray actor boundaries intact.
"""

from __future__ import annotations


class ChorusError(Exception):
    """Base of every chorus error."""


class ConfigError(ChorusError):
    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(file, field, problem)
        self.file, self.field, self.problem = file, field, problem

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.problem}"


# --- where models run -------------------------------------------------------------------------


class ClusterError(ChorusError):
    """Base of the errors of placing and starting models."""


class GpuSpecError(ClusterError):
    def __init__(self, spec: str, problem: str) -> None:
        super().__init__(spec, problem)
        self.spec, self.problem = spec, problem

    def __str__(self) -> str:
        return (
            f"GPU spec {self.spec!r}: {self.problem} "
            "(write NODESxGPUSxNAME-MEMGB or GPUSxNAME-MEMGB, e.g. 8xH100-80GB or 2x4xA100-40GB; "
            "join different nodes with commas)"
        )


class SizingError(ClusterError):
    def __init__(self, model: str, problem: str) -> None:
        super().__init__(model, problem)
        self.model, self.problem = model, problem

    def __str__(self) -> str:
        return f"model '{self.model}': {self.problem}"


class PlacementError(ClusterError):
    """`model` is the deployment at fault ('' when the problem is the whole fleet's)."""

    def __init__(
        self,
        model: str,
        problem: str,
        needed_bytes: int = 0,
        largest_bytes: int = 0,
        fixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(model, problem, needed_bytes, largest_bytes, tuple(fixes))
        self.model, self.problem = model, problem
        self.needed_bytes, self.largest_bytes = needed_bytes, largest_bytes
        self.fixes = tuple(fixes)

    def __str__(self) -> str:
        who = f"model '{self.model}': " if self.model else ""
        text = who + self.problem
        if self.fixes:
            text += "; to make it fit: " + "; or ".join(self.fixes)
        return text


class DeployError(ClusterError):
    """A model could not be started; the message names it and says why."""


# --- what a request can run into ----------------------------------------------------------------


class RequestError(ChorusError):
    """The caller's mistake; the message says what to change."""


class UnknownModelError(RequestError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name, list(known))
        self.name, self.known = name, list(known)

    def __str__(self) -> str:
        return f"The model '{self.name}' does not exist. Known patterns and models: {', '.join(self.known)}"


class UnknownResponse(RequestError):
    """Feedback names a response id chorus did not keep (not an adaptive pattern's reply)."""

    def __init__(self, response_id: str) -> None:
        super().__init__(response_id)
        self.response_id = response_id

    def __str__(self) -> str:
        return f"no answer with id '{self.response_id}' awaits feedback (only adaptive patterns' answers are kept)"


class BudgetExceeded(RequestError):
    pass


class PromptTooLong(RequestError):
    """The request cannot fit the model's context."""


class NotRecorded(RequestError):
    """A model that replays recorded answers was asked something it has no record for (another
    question, or a step such as a classifier or verifier that recorded answers cannot play):
    bind that role to a live model."""


class Unsupported(RequestError):
    """A request field the named pattern cannot honour; `param` is the field, so it is refused
    (400) rather than silently dropped."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(param, problem)
        self.param, self.problem = param, problem

    def __str__(self) -> str:
        return f"{self.param}: {self.problem}"


class EngineRejected(RequestError):
    """vLLM's OpenAI layer refused a hosted-model request; its message and 4xx status pass on."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message, status, param)
        self.message, self.status, self.param = message, status, param

    def __str__(self) -> str:
        return self.message


class OverloadedError(ChorusError):
    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s)
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return str(self.args[0])


class QueueFull(OverloadedError):
    """A replica's wait queue is at its bound."""


class UnavailableError(ChorusError):
    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s)
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return str(self.args[0])


class NotRunning(UnavailableError):
    """No chorus is reachable at the given address."""


class NoHealthyReplica(UnavailableError):
    """Every replica of `model` is down, starting or restarting; retry after `retry_after_s`."""

    def __init__(self, model: str, detail: str = "", retry_after_s: float = 5.0) -> None:
        super().__init__(model, retry_after_s)
        self.args = (model, detail, retry_after_s)
        self.model, self.detail = model, detail

    def __str__(self) -> str:
        why = f" ({self.detail})" if self.detail else ""
        return f"model '{self.model}' has no healthy replica right now{why}; retry after {self.retry_after_s:g} s"


class Draining(UnavailableError):
    """chorus is shutting down: running requests finish, new ones are refused."""


class DeadlineExceeded(ChorusError):
    """The request ran past its deadline (`timeout_s`); what it had started was aborted."""

    def __init__(self, timeout_s: float, what: str = "the request") -> None:
        super().__init__(timeout_s, what)
        self.timeout_s, self.what = timeout_s, what

    def __str__(self) -> str:
        return f"{self.what} did not finish within its deadline of {self.timeout_s:g} s (chorus option timeout_s, default server.request_timeout_s)"


class EngineError(ChorusError):
    """An engine fault: it failed a request or could not start, its replica died, or it timed out."""


class ReplicaLost(EngineError):
    """The call's replica died, restarted or is not serving, before any token reached the caller."""


class StepFailed(ChorusError):
    """A model call failed; the trace step says why."""


class PatternFailed(StepFailed):
    pass


# --- batch jobs -----------------------------------------------------------------------------------


class JobError(ChorusError):
    """A batch job cannot start or go on; finished rows are never lost by it."""


class JobInputError(JobError):
    """The input as a whole is unusable (a single bad row gets an error line instead)."""


class JobOutputBusy(JobError):
    """Another job holds the output folder's lock: two writers would duplicate rows."""
