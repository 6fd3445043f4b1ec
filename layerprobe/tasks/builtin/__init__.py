"""The built-in offline suite: `builtin/*` tasks generated without any download (registered on import)."""
