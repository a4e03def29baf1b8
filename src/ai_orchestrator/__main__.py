"""`python -m ai_orchestrator`: the same command line as the `ai-orchestrator` script."""

from ai_orchestrator.cli import main

# Guarded: uvicorn's reloader starts its worker by spawning, which imports this module again.
if __name__ == "__main__":
    raise SystemExit(main())
