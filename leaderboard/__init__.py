"""Results JSON schema, markdown leaderboard and figures."""
