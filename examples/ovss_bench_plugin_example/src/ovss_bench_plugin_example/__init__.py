"""Example ovss-bench plugin (see docs/plugins.md in the ovss-bench repository)."""
