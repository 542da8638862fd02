"""Entry points: the HTTP API, the CLI. The composition root that wires everything lives here."""
