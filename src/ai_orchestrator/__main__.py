"""`python -m ai_orchestrator`: the same command line as the `ai-orchestrator` script."""

from ai_orchestrator.cli import main

raise SystemExit(main())
