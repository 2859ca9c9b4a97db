"""Scenario + seed -> deterministic op streams (and previews of them), and running one op
on a target."""
