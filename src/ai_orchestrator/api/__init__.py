"""HTTP adapters over the core: thin translations between wire formats and Orchestrator."""
