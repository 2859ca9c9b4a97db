"""Scenario + seed -> deterministic op streams, and running one op on a target."""
