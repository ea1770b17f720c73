"""Every prompt chorus sends, as named templates.

Layout rule: what several steps share (system text, then the question) comes first and is
byte-identical across those steps, and what differs (references, a member's own draft) comes
last, so the engine's prefix cache serves the shared part once.
"""

from __future__ import annotations

from collections.abc import Mapping

from serving.types import Message

ROUTER_SYSTEM = (
    "You route requests to the right specialist. Reply with exactly one label from this list:\n"
    "{labels}\n"
    "Reply with the label only."
)


def router_messages(labels: Mapping[str, str], question: str) -> list[Message]:
    """Classifier prompt: the label list (with what each label is for) and the user's request."""
    listing = "\n".join(f"- {label}: {when}" if when else f"- {label}" for label, when in labels.items())
    return [
        Message(role="system", content=ROUTER_SYSTEM.format(labels=listing)),
        Message(role="user", content=question),
    ]
