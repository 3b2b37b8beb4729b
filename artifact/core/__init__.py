"""What the launcher knows, as plain data: experiments, run folders, processes, GPUs."""
