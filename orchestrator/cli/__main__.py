"""`python -m orchestrator.cli`: the `chorus` command."""

from orchestrator.cli.main import main

raise SystemExit(main())
