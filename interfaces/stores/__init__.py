"""Where state lives, by deployment profile: the embedded default (SQLite files, one process) and
PostgreSQL, with Redis for what every API process must share at once when REDIS_URL names one.
Each profile returns the same `Stores`, named by role and typed by what the use cases ask of it,
so the composition root (interfaces/container.py) wires one graph whatever the profile."""
