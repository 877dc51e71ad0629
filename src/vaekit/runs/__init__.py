"""What a run leaves on disk: the run folder, checkpoints, metrics files and the report."""
