"""Storage: the table model (schema), the SQLite store, the standard tables and the seed data."""
