"""API keys with scopes, read from the key file named by ``AIO_API_KEYS_FILE``.

Only a SHA-256 digest of each key is kept. Keys are long random strings, so a plain
digest (no salt, no slow hash) is enough to make a memory dump useless, and it keeps
the check per request at one hash. A key is never logged nor put into an error message;
log lines name a key by ``key_id``, a short prefix of its digest.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ai_orchestrator.errors import ConfigurationError, Forbidden, Unauthorized
from ai_orchestrator.settings import Settings

MIN_KEY_LENGTH = 16


class Scope(StrEnum):
    """What a key may do. ``admin`` covers everything ``inference`` does."""

    INFERENCE = "inference"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the scope of the key and its id, never the key itself."""

    key_id: str
    scope: Scope

    def may(self, needed: Scope) -> bool:
        return self.scope is Scope.ADMIN or self.scope is needed


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The digests of the known keys and their scopes."""

    def __init__(self, keys: dict[bytes, Scope]) -> None:
        self._keys = keys

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        """Parse ``<scope>:<key>`` lines; blank lines and ``#`` comments are skipped.
        Errors name the line, never its content, since the content is a secret."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"AIO_API_KEYS_FILE {path}: cannot read it ({exc})") from None
        keys: dict[bytes, Scope] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            scope, key = _parse_line(path, number, line, keys)
            keys[_digest(key)] = scope
        if not keys:
            raise ConfigurationError(f"AIO_API_KEYS_FILE {path}: holds no keys")
        return cls(keys)

    def authenticate(self, key: str | None) -> Principal:
        """The principal for ``key``; Unauthorized if it is missing or unknown.

        Every stored digest is compared, in constant time, so that the time taken says
        nothing about which key, or how much of one, matched.
        """
        if not key:
            raise Unauthorized(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'"
            )
        presented = _digest(key)
        found: Scope | None = None
        for digest, scope in self._keys.items():
            if hmac.compare_digest(digest, presented):
                found = scope
        if found is None:
            raise Unauthorized("the API key is not valid")
        return Principal(key_id=presented.hex()[:12], scope=found)


def _parse_line(path: Path, number: int, line: str, seen: dict[bytes, Scope]) -> tuple[Scope, str]:
    scope, separator, key = line.partition(":")
    where = f"AIO_API_KEYS_FILE {path}, line {number}"
    if not separator or scope not in set(Scope):
        raise ConfigurationError(f"{where}: expected '<scope>:<key>' with scope inference or admin")
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigurationError(f"{where}: the key is shorter than {MIN_KEY_LENGTH} characters")
    if _digest(key) in seen:
        raise ConfigurationError(f"{where}: the key appears twice")
    return Scope(scope), key


def authorize(principal: Principal, needed: Scope) -> None:
    if not principal.may(needed):
        raise Forbidden(
            f"this API key has scope {principal.scope.value!r}; the route needs {needed.value!r}"
        )


def load_keys(settings: Settings) -> KeyRing | None:
    """The key ring the settings ask for, or None when keys are not required.

    Raises ConfigurationError in staging and production without a key file, so that the
    service never starts there with its routes open.
    """
    if settings.api_keys_file is not None:
        return KeyRing.from_file(settings.api_keys_file)
    if settings.keys_required:
        raise ConfigurationError(
            f"AIO_API_KEYS_FILE is required in {settings.env.value}: every route but "
            "/health/* needs an API key there (one '<scope>:<key>' per line)"
        )
    return None
