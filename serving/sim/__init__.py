"""The simulated GPU engine: vLLM-style continuous batching on a GPU latency model, no GPU.

One concept per module:

    latency.py       GpuProfile (a GPU's published peaks and achieved fractions), LatencyModel
    gpu.py           SimulatedGpu: a GPU several engines share (processor sharing)
    clock.py         SimClock (one engine's simulated time), VirtualClockLoop (time jumps)
    scheduler.py     BatchScheduler: admission and the stepping loop (continuous batching)
    prefix_cache.py  PrefixCache: prompt blocks by chained hash, LRU
    sequence.py      SimSequence (a request in flight), RequestStats (a finished one)
    tokens.py        tokenizer-free token counts and block hashes
    answers.py       what an engine answers: filler, or text honouring a constraint
    regex_gen.py     strings matching a regular expression (a documented subset)
    regex_parse.py   the parser of that subset
    engine.py        SimulatedEngine: the Engine protocol over the pieces above

docs/simulated-engine.md states the latency model, its constants and what it ignores.
"""
