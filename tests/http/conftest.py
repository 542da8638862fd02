"""The pages' `site` (the app served as `tessera serve` runs it, a browser-like client) for every
HTTP test module that signs a person in on the pages."""

from tests.http.test_pages import site  # noqa: F401  (the fixture)
