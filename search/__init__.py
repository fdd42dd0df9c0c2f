"""search: YAML spaces -> Ray Tune trials -> Parquet leaderboard and the HTML report."""
