"""Streaming a pattern for real: the final step's tokens leave as the engine makes them.

A pattern marks the call whose text is its answer (`ctx.call(..., final=True)`); under a
`StreamSink` that call streams, each delta is queued here and sent on at once, and every earlier
step reports a `Progress` event as it finishes. The time to the first token of a council is
therefore its members plus the synthesizer's first token, not the whole answer.

A pattern may end its answer with text of its own after the final step (a council's agreement
line): what follows the streamed text is sent as one last delta. An answer that does not begin
with what was streamed (the final step failed half-way and the pattern answered otherwise)
cannot be taken back, so the stream fails instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable

from cluster.errors import PatternFailed
from orchestrator.core.schema import Delta, Progress, Reply
from orchestrator.core.trace import Step


class StreamSink:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Delta | Progress] = asyncio.Queue()
        self.streamed: list[str] = []

    def delta(self, text: str) -> None:
        self.streamed.append(text)
        self.queue.put_nowait(Delta(text=text))

    def progress(self, step: Step) -> None:
        self.queue.put_nowait(
            Progress(step=step.name, role=step.role, model=step.model, ok=step.error is None, latency_s=step.latency_s)
        )


async def streamed(run: Awaitable[Reply], sink: StreamSink) -> AsyncGenerator[Delta | Progress | Reply, None]:
    """`sink`'s events while `run` runs, then the rest of the answer and the Reply."""
    task = asyncio.ensure_future(run)
    try:
        while True:
            getter = asyncio.ensure_future(sink.queue.get())
            done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
                continue
            getter.cancel()
            while not sink.queue.empty():
                yield sink.queue.get_nowait()
            reply = task.result()
            sent = "".join(sink.streamed)
            if not reply.text.startswith(sent):
                # A pattern may trim the final step's trailing whitespace before adding its own
                # text (a council's agreement line); anything else cannot be taken back.
                sent = sent.rstrip()
                if not reply.text.startswith(sent):
                    raise PatternFailed(f"'{reply.model}' changed its answer after streaming part of it")
            if len(reply.text) > len(sent):
                yield Delta(text=reply.text[len(sent) :])
            yield reply
            return
    finally:
        if not task.done():  # the client left: stop the pattern (and its engine calls)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
