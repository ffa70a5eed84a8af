"""What a run leaves for people: the report and its plots, the figures, the retrospective, the benchmark branch."""
