"""The served OpenAPI document says what the service really does: request bodies refuse unknown
fields, and every error an operation can answer is listed as a problem document.

The fuzz tests (tests/http/test_fuzz.py) hold every response to this document.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.datastructures import ResponseSpec
from litestar.typing import FieldDefinition

from interfaces.http.problems import PROBLEM_JSON
from interfaces.http.schemas import Problem

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema

# What each status means here, and the stable codes it carries (see docs/integrate/errors.md).
_MEANINGS: dict[int, str] = {
    400: "Invalid input (`validation_failed`, with `errors`), a body that is not UTF-8 JSON "
    "(`malformed_request`), an unknown, spent or expired token (`invalid_token`), or a new "
    "passkey that does not verify (`invalid_passkey_registration`), a client redirect URI "
    "not on OIDC_REDIRECT_URIS (`redirect_uri_not_allowed`), a provider sign-in whose state is "
    "unknown, spent, expired or another browser's (`invalid_state`), a provider that vouched "
    "for no email (`identity_email_missing`), a sign-in code unknown, spent or expired "
    "(`invalid_sign_in_code`).",
    401: "Not authenticated: `invalid_credentials`, `invalid_access_token`, "
    "`invalid_refresh_token`, `refresh_token_reused`, `invalid_mfa_code`, `invalid_mfa_token`, "
    "`invalid_passkey`, `invalid_identity_response` (a provider's answer that did not verify).",
    403: "Refused: `email_not_verified`, `invalid_current_password`, or `forbidden` (the "
    "token's roles do not allow it: `auditor` for /api/audit, `admin` for /api/admin).",
    404: "`account_not_found` (no such account, or the token's account no longer exists), "
    "`session_not_found`, `passkey_not_found`, `identity_not_found`, `consent_not_found`, "
    "`unknown_provider`, or "
    "`not_found` (a malformed id in the path).",
    409: "Conflict: `email_taken`, `username_taken`, `mfa_already_enabled`, `mfa_not_enabled`, "
    "`identity_taken` (linked to another account), `account_exists` (the provider's email "
    "belongs to an account: sign in to it, then link), `last_sign_in_method`.",
    413: "`request_too_large`: the body is over 64 KiB.",
    415: "`unsupported_media_type`: the body is not `application/json`.",
    423: "`account_locked`, with `Retry-After`.",
    429: "`rate_limited`, with `Retry-After`.",
    502: "`provider_unavailable`: an identity provider did not answer in time.",
    503: "`unavailable` (a backing service did not answer) or `overloaded` (password hashing is "
    "at capacity), with `Retry-After`.",
}

# Every operation that takes a JSON body can be refused for its body's size, type or shape, and
# every one that touches the event store can meet an outage.
BODY = (400, 413, 415, 503)
BEARER_ERRORS = (401, 404, 503)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The problem responses of an operation, for a route's `responses=`."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=f"{HTTPStatus(status).phrase}: {_MEANINGS[status]}",
            generate_examples=False,
        )
        for status in sorted(set(statuses))
    }


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's msgspec schemas leave out `forbid_unknown_fields`: say `additionalProperties:
    false` for the structs that refuse unknown fields, so clients and fuzzers know."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and bool(
            field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
