"""Batch jobs: OpenAI batch files (or plain JSONL / Parquet rows) run through the chorus fleet as
Ray Jobs on Ray Data, at batch priority, resumable exactly once.

    formats   a row → a ChatRequest, or why not         scan      the input checked and split
    source    the Ray Data source of the splits         caller    the Ray Data stage calling chorus
    link      the one adapter to the orchestrator        capacity  requests in flight from the fleet
    output    OpenAI batch output lines                  shards    atomic shards, lock, done rows
    progress  the progress lines a job prints            runner    the driver; run = its entry point
    submit    Ray Job submission and following (used by `chorus submit` / `chorus jobs`)
"""
