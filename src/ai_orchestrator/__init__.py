"""ALT_LAS AI Orchestrator: a catalogue of local models served through one API."""

__version__ = "0.1.0"
