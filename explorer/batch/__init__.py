"""Many runs at once: parameter sweeps (axes, runs, the grid and table) and dataset
augmentation (settings and shards, folders and manifests, the resumable batched run)."""
