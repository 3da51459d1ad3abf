"""The runbook language: loading YAML with positions, the schema, params and templating."""
