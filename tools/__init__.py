"""Project tooling that is not part of the service: the documentation's generated pages."""
