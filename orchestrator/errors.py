"""Every error chorus raises on purpose, in one tree.

    ChorusError
    ├── ConfigError            a config file is wrong (names the file, the field and the fix)
    ├── RequestError           the caller asked for something invalid          → HTTP 400
    │   ├── UnknownModelError  `model` names no pattern and no hosted model     → HTTP 404
    │   └── BudgetExceeded     the request's budget ran out before an answer    → HTTP 400
    ├── OverloadedError        a queue is full; retry after `retry_after_s`     → HTTP 429
    └── StepFailed             a model call failed (engine fault, bad output)   → HTTP 500
        └── PatternFailed      the pattern could not produce an answer at all   → HTTP 500

All of them pickle (plain args only), so they cross Ray actor boundaries intact.
"""

from __future__ import annotations


class ChorusError(Exception):
    """Base of every chorus error."""

    http_status = 500
    error_type = "internal_error"


class ConfigError(ChorusError):
    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(file, field, problem)
        self.file, self.field, self.problem = file, field, problem

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.problem}"


class RequestError(ChorusError):
    http_status = 400
    error_type = "invalid_request_error"


class UnknownModelError(RequestError):
    http_status = 404
    error_type = "not_found_error"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name, known)
        self.name, self.known = name, known

    def __str__(self) -> str:
        return f"The model '{self.name}' does not exist. Known patterns and models: {', '.join(self.known)}"


class BudgetExceeded(RequestError):
    pass


class OverloadedError(ChorusError):
    http_status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s)
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return str(self.args[0])


class StepFailed(ChorusError):
    error_type = "server_error"


class PatternFailed(StepFailed):
    pass
