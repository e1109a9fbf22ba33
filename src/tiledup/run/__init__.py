"""Running the workflow: config checks, atomic file io, progress lines, clean stops, SLURM, errors."""
