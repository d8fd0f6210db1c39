"""Run reporting: the live status file (more to come: results log, summary table, plots)."""
