"""Examples of factorial-ws in use; each is importable from the repository's root."""
