"""The engine: executes a validated runbook step by step and emits events to reporters."""
