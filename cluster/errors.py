"""Errors the cluster layer raises on purpose.

    ClusterError
    ├── GpuSpecError     a GPU spec string such as `2x4xA100-40GB` cannot be read
    ├── SizingError      a model's memory cannot be estimated (no config.json, no catalog entry)
    └── PlacementError   a model cannot be placed: it names the model, what it needs, the
                         largest space there is and what would make it fit

Every one keeps its constructor arguments as plain values (str, int, tuples of str), so it
pickles and crosses Ray actor boundaries intact.
"""

from __future__ import annotations


class ClusterError(Exception):
    """Base of every error in `cluster/`."""


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
