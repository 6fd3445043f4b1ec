"""Real downstream tasks read from the user's data root (registered on import)."""
