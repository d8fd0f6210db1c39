"""Run reporting: the live status file and `moola status`, the results log, the terminal summary
table, the figures drawn during a run and the HTML page of `moola report`."""
