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


# --- Answer formats -------------------------------------------------------------------------

ANSWER_FORMAT_NUMERIC = (
    "Solve the problem step by step. End your reply with a final line of the form '#### <number>' "
    "holding only the final numeric answer."
)


ANSWER_FORMAT_CHOICE = (
    "Think the question through step by step. Then end your reply with a final line of the form "
    "'The answer is (X)', where X is the letter of the option you choose."
)


def with_answer_format(messages: list[Message], instruction: str = ANSWER_FORMAT_NUMERIC) -> list[Message]:
    """The conversation with a format instruction first: a system message every member shares,
    or appended to the conversation's own system message (an escalation prompt's), so an
    escalated answer keeps the members' format."""
    if messages and messages[0].role == "system":
        first = Message(role="system", content=f"{messages[0].content}\n\n{instruction}")
        return [first, *messages[1:]]
    return [Message(role="system", content=instruction), *messages]


def _numbered(items: list[str], label: str) -> str:
    return "\n\n".join(f"[{label} {i}]\n{text.strip()}" for i, text in enumerate(items, start=1))


# --- References (pyramid layers, council merge, consensus escalation) -----------------------

PYRAMID_SYSTEM = (
    "Answer the user's request accurately and completely. If numbered references follow the "
    "request, they are answers to it from other assistants and some may be wrong: judge them "
    "critically and write one better answer of your own. Do not mention the references."
)


def pyramid_messages(conversation: list[Message], references: list[str]) -> list[Message]:
    """A pyramid layer's prompt. Every layer opens identically (system text, then the whole
    conversation), so later layers reuse the first layer's cached prefix, long documents
    included; the references, which change per layer, come last as a message of their own."""
    opening = [Message(role="system", content=PYRAMID_SYSTEM), *conversation]
    if not references:
        return opening
    return [*opening, Message(role="user", content="References:\n\n" + _numbered(references, "reference"))]


MERGE_SYSTEM = (
    "You are the synthesizer of a council. Several members answered the question independently; "
    "their answers follow as numbered references. Combine what is right in them into one answer. "
    "Where they disagree, say so briefly."
)

ESCALATE_SYSTEM = (
    "Several assistants answered the question below but disagreed. Their answers follow as "
    "numbered references. Work out the correct answer yourself and give it."
)


def references_messages(system: str, question: str, references: list[str]) -> list[Message]:
    """Shared prefix (system, question) first; the references, which differ per layer, last."""
    return [
        Message(role="system", content=system),
        Message(role="user", content=f"Question:\n{question}\n\nReferences:\n\n{_numbered(references, 'reference')}"),
    ]


# --- Pipeline ------------------------------------------------------------------------------

PIPELINE_TEMPLATES: dict[str, str] = {
    "answer": "Answer the user's request.",
    "draft": "Write a first draft answering the user's request. Be concrete; it will be refined.",
    "critique": "Point out the mistakes, gaps and unclear parts of the previous answer to the request.",
    "refine": (
        "Improve the previous answer to the request: fix its mistakes and fill its gaps. "
        "Reply with the improved answer only."
    ),
    "summarize": "Summarize the previous output for the user in a few sentences.",
    "custom": "Follow the instruction.",
}


def pipeline_messages(template: str, instruction: str, question: str, previous: str | None) -> list[Message]:
    """One pipeline step: template and instruction, the request, then the previous step's output."""
    system = PIPELINE_TEMPLATES[template] + (f"\n{instruction}" if instruction else "")
    user = f"Request:\n{question}"
    if previous is not None:
        user += f"\n\nPrevious output:\n{previous}"
    return [Message(role="system", content=system), Message(role="user", content=user)]


# --- Judging and verification --------------------------------------------------------------

JUDGE_SYSTEM = (
    "You grade answers. Rate how correct, complete and helpful the answer is for the question, "
    "from 1 (useless or wrong) to 10 (perfect). Reply with the number only."
)

VERIFY_YES_NO_SYSTEM = (
    "You check answers. Is the answer below correct and does it fully address the question? "
    "Reply with yes or no only."
)


def judge_messages(question: str, candidate: str) -> list[Message]:
    """Question first (shared by every candidate's judgement), the candidate last."""
    return [
        Message(role="system", content=JUDGE_SYSTEM),
        Message(role="user", content=f"Question:\n{question}\n\nAnswer to rate:\n{candidate}"),
    ]


def verify_messages(question: str, candidate: str) -> list[Message]:
    return [
        Message(role="system", content=VERIFY_YES_NO_SYSTEM),
        Message(role="user", content=f"Question:\n{question}\n\nAnswer to check:\n{candidate}"),
    ]


# --- Planner / executor --------------------------------------------------------------------

PLAN_SYSTEM = (
    "You are a planner. Break the request into at most {max_steps} steps. Each step has a type "
    "(one of: {types}), a short instruction, and `after`: the numbers (1-based) of earlier steps "
    "whose results it needs. Independent steps must not depend on each other. Reply with JSON only."
)

PLAN_REPAIR = (
    "Your plan was rejected: {error}\nYour plan was:\n{plan}\n"
    "Reply with a corrected plan as JSON only."
)

PLAN_STEP_SYSTEM = "You carry out one step of a larger plan. Do only this step, concisely."

PLAN_SYNTHESIS_SYSTEM = (
    "You planned how to answer the request and your steps have been carried out; their results "
    "follow, numbered. Write the final answer to the request from them."
)


def plan_messages(types: list[str], max_steps: int, question: str) -> list[Message]:
    return [
        Message(role="system", content=PLAN_SYSTEM.format(max_steps=max_steps, types=", ".join(types))),
        Message(role="user", content=question),
    ]


def plan_repair_messages(types: list[str], max_steps: int, question: str, plan: str, error: str) -> list[Message]:
    """The planning prompt again (a cached prefix), then the rejected plan and why."""
    return [
        *plan_messages(types, max_steps, question),
        Message(role="assistant", content=plan),
        Message(role="user", content=PLAN_REPAIR.format(error=error, plan=plan)),
    ]


def plan_step_messages(question: str, instruction: str, inputs: list[str]) -> list[Message]:
    user = f"Overall request:\n{question}\n\nYour step:\n{instruction}"
    if inputs:
        user += f"\n\nResults of the steps it builds on:\n\n{_numbered(inputs, 'result')}"
    return [Message(role="system", content=PLAN_STEP_SYSTEM), Message(role="user", content=user)]


def plan_synthesis_messages(question: str, results: list[str]) -> list[Message]:
    return references_messages(PLAN_SYNTHESIS_SYSTEM, question, results)


# --- Supervisor / worker -------------------------------------------------------------------

ASSIGN_SYSTEM = (
    "You supervise a team of workers:\n{workers}\n"
    "Split the request into sub-tasks and assign each to the best-suited worker. Reply with JSON only."
)

WORKER_SYSTEM = "You are the {worker} of a team. Do the task you are given, concisely."

REVIEW_SYSTEM = (
    "You supervise a team. Review the workers' results below for the request. Accept if together "
    "they let you answer it well; otherwise ask for revisions, with feedback for each worker that "
    "must redo its task. Reply with JSON only."
)

WRITE_SYSTEM = (
    "You supervise a team whose results follow, numbered. Write the final answer to the request "
    "from them."
)


def assign_messages(workers: dict[str, str], question: str) -> list[Message]:
    listing = "\n".join(f"- {name}: {about}" if about else f"- {name}" for name, about in workers.items())
    return [
        Message(role="system", content=ASSIGN_SYSTEM.format(workers=listing)),
        Message(role="user", content=question),
    ]


def worker_messages(worker: str, question: str, task: str, previous: str | None, feedback: str | None) -> list[Message]:
    user = f"Overall request:\n{question}\n\nYour task:\n{task}"
    if previous is not None and feedback is not None:
        user += f"\n\nYour previous result:\n{previous}\n\nSupervisor's feedback:\n{feedback}\n\nRedo the task."
    return [Message(role="system", content=WORKER_SYSTEM.format(worker=worker)), Message(role="user", content=user)]


def _results(results: list[tuple[str, str, str]]) -> list[str]:
    return [f"{worker} (task: {task}):\n{result}" for worker, task, result in results]


def review_messages(question: str, results: list[tuple[str, str, str]]) -> list[Message]:
    """`results`: (worker, task, result) in assignment order."""
    return references_messages(REVIEW_SYSTEM, question, _results(results))


def write_messages(question: str, results: list[tuple[str, str, str]]) -> list[Message]:
    return references_messages(WRITE_SYSTEM, question, _results(results))
