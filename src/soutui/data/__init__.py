"""Data: canonical schema, importers, cleaning + quarantine, privacy, splits and the store."""
