"""On-disk data: episode files (rollouts, later latent series), their readers, and random-policy collection."""
