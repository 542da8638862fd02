"""What the Elastic Common Schema calls this service's facts: one table from each trail event's
class name to its ECS categorisation, shared by the security log lines and the trail export, so
a Kibana query for a lockout finds it in both.

Categories and types are ECS's allowed values, paired as the ECS reference expects
(authentication: start/end/info; iam: user/change/creation/deletion/info; session:
start/end/info).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

ECS_VERSION = "8.11.0"  # the ECS reference every field this service writes was checked against
SERVICE = "tessera"


def service_version() -> str:
    try:
        return metadata.version(SERVICE)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


# event class name -> (event.category, event.type)
_AUTHENTICATION = (["authentication"], ["info"])
_USER_CHANGE = (["iam"], ["user", "change"])
CATEGORIES: dict[str, tuple[list[str], list[str]]] = {
    "Registered": (["iam"], ["user", "creation"]),
    "EmailVerificationRequested": (["iam"], ["user", "info"]),
    "EmailVerified": _USER_CHANGE,
    "ProfileUpdated": _USER_CHANGE,
    "PasswordChanged": _USER_CHANGE,
    "PasswordRehashed": _USER_CHANGE,
    "PasswordResetRequested": (["iam"], ["user", "info"]),
    "RoleGranted": _USER_CHANGE,
    "RoleRevoked": _USER_CHANGE,
    "AccountDisabled": _USER_CHANGE,
    "AccountEnabled": _USER_CHANGE,
    "AccountUnlocked": _USER_CHANGE,
    "MfaEnrollmentStarted": _USER_CHANGE,
    "MfaEnabled": _USER_CHANGE,
    "MfaDisabled": _USER_CHANGE,
    "RecoveryCodesRenewed": _USER_CHANGE,
    "MfaSecretResealed": _USER_CHANGE,
    "ClaimsRekeyed": _USER_CHANGE,
    "AccountErased": (["iam"], ["user", "deletion"]),
    "IdentityLinked": _USER_CHANGE,
    "IdentityUnlinked": _USER_CHANGE,
    "IdentityUsed": _AUTHENTICATION,
    "LoginFailed": (["authentication"], ["start"]),
    "AccountLocked": _AUTHENTICATION,
    "FailedLoginsReset": _AUTHENTICATION,
    "TotpCodeAccepted": _AUTHENTICATION,
    "RecoveryCodeUsed": _AUTHENTICATION,
    "PasskeyRegistered": _USER_CHANGE,
    "PasskeyRenamed": _USER_CHANGE,
    "PasskeyRemoved": _USER_CHANGE,
    "PasskeyUsed": _AUTHENTICATION,
    "PasskeyCounterWentBack": (["authentication"], ["info"]),
    "SessionStarted": (["authentication", "session"], ["start"]),
    "SessionRefreshed": (["authentication", "session"], ["info"]),
    "SessionRevoked": (["session"], ["end"]),
    "AllSessionsRevoked": (["session"], ["end"]),
    "RefreshTokenReuseDetected": (["authentication", "session"], ["end"]),
    # What a person let an app have (OpenID Provider consents), and taking it back.
    "ConsentGranted": _USER_CHANGE,
    "ConsentRevoked": _USER_CHANGE,
    # An app session under a consent; recorded by releases before app sessions stood alone.
    "AppSessionStarted": (["authentication", "session"], ["info"]),
    # The OpenID Provider's clients: apps whose credentials an admin manages.
    "ClientRegistered": (["iam"], ["creation"]),
    "ClientUpdated": (["iam"], ["change"]),
    "ClientSecretRotated": (["iam"], ["change"]),
    "ClientRemoved": (["iam"], ["deletion"]),
    # Tokens a client got for itself (client_credentials): a count, recorded at most a minute.
    "ClientTokensIssued": (["authentication"], ["info"]),
    # Webhook endpoints: where events go, as an admin set them (or the service turned one off).
    "EndpointCreated": (["configuration"], ["creation"]),
    "EndpointUpdated": (["configuration"], ["change"]),
    "EndpointSecretRotated": (["configuration"], ["change"]),
    "EndpointReplayed": (["configuration"], ["info"]),
    "EndpointDisabled": (["configuration"], ["change"]),
    "EndpointEnabled": (["configuration"], ["change"]),
    "EndpointRemoved": (["configuration"], ["deletion"]),
}
# The trail's own outcomes (trail.py) said as ECS's success/failure.
_FAILURES = frozenset({"failure", "reuse_detected"})


def event_fields(action: str, trail_outcome: str) -> dict[str, Any]:
    """The `event` object of a security fact: kind, category, type, action, outcome."""
    category, kind = CATEGORIES.get(action, (["iam"], ["info"]))
    return {
        "kind": "event",
        "category": list(category),
        "type": list(kind),
        "action": action,
        "outcome": "failure" if trail_outcome in _FAILURES else "success",
    }
