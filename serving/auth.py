"""API keys: which exist, what each may do, and the one check every authenticated route makes.

Keys are resolved once, where the app is built (`serving/app.py::build_app`, in the process
whose environment the user controls), and travel with the app to every gateway replica:
replicas a cluster starts may never see that environment. A config that asks for keys but
resolves to none refuses to start, so auth can never turn off silently.

Two rights: a *read* key (`auth.api_keys`) may run tasks and read the registry; an *admin*
key (`auth.admin_keys`) may also register and delete prompts.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Literal

from promptserve.serving.config import AuthConfig
from promptserve.serving.errors import AuthenticationError, PermissionDenied

log = logging.getLogger("promptserve.auth")
Right = Literal["read", "admin"]


class AuthConfigError(ValueError):
    """The auth config asks for keys but none resolved: refuse to start rather than serve
    without authentication."""


@dataclass(frozen=True)
class ApiKeys:
    """The resolved keys. Empty both = auth off (only when the config did not ask for it)."""

    read: frozenset[str] = frozenset()
    admin: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return bool(self.read or self.admin)

    def check(self, authorization: str | None, right: Right) -> None:
        """Raise 401 for no key, 403 for an unknown key or one without `right`. Keys are
        compared in constant time, as bytes, with every key (no early exit on a match)."""
        if not self.enabled:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("missing API key: send `Authorization: Bearer <key>`")
        given = token.encode()
        is_admin = _matches(given, self.admin)
        if right == "admin":
            if not is_admin:
                raise PermissionDenied(
                    "this route needs an admin key (auth.admin_keys): registering and deleting "
                    "prompts are admin rights"
                    if _matches(given, self.read)
                    else "API key not accepted"
                )
            return
        if not (is_admin or _matches(given, self.read)):
            raise PermissionDenied("API key not accepted")


def _matches(given: bytes, keys: frozenset[str]) -> bool:
    found = False
    for key in keys:  # no short-circuit: the time does not say which key matched
        found |= hmac.compare_digest(given, key.encode())
    return found


def resolve_keys(auth: AuthConfig) -> ApiKeys:
    """The keys `auth` names, read from this process's environment. Raises AuthConfigError
    when auth was asked for (`enabled: true`, or keys/variables named in the config) and no
    key resolved; logs at WARNING, loudly, whenever auth is off."""
    if auth.enabled is False:
        log.warning(auth.off_warning(reason="auth.enabled is false"))
        return ApiKeys()
    keys = ApiKeys(read=auth.read_keys(), admin=auth.admin_keys_resolved())
    if keys.enabled:
        if not keys.admin:
            log.warning(
                "no admin key configured (auth.admin_keys or $%s): nobody can register or "
                "delete prompts through the API",
                auth.admin_keys_env,
            )
        return keys
    if auth.enabled:
        raise AuthConfigError(
            f"auth asks for API keys but none resolved: {auth.sources()} are empty in this "
            "process's environment. Set one, or set `auth.enabled: false` to serve without "
            "authentication"
        )
    log.warning(auth.off_warning(reason="no keys configured"))
    return keys
