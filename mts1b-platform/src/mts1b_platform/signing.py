"""Signed commands: the key registry, private signing keys, verification, used nonces.

Why in the platform: more than one service takes commands whose effect depends on who sent
them - the OMS's halt, reduce and resume (:mod:`mts1b_oms.signing`), the treasury's fund
configurations that loosen limits - and none may trust a name in a payload. A command carries an
Ed25519 signature, by a key the receiving service has registered, over the bytes the command
model itself defines (``signing_bytes()``); :class:`SignedCommandVerifier` applies it only when
every check passes, in this order:

1. the key is registered (else ``UNAUTHORIZED``);
2. the signature verifies with that key's public key (else ``SIGNATURE_INVALID``);
3. the key holds the role the command needs (else ``UNAUTHORIZED``);
4. the timestamp lies within ``window`` (30 s by default) of the receiver's clock, either way
   (else ``STALE_COMMAND``);
5. the key has not used the nonce before (else ``REPLAY_REFUSED``): the nonce is claimed in the
   receiver's store - PostgreSQL in production - so a restart does not reopen a replay.

The actor recorded is the registered key's name. A refusal is a coded
:class:`~mts1b_foundation.CommandReply` and a WARNING log line with the key id (never the
signature; a service never holds a private key). The signature is checked before the store is
touched, so forged commands cannot fill the nonce table.

Private keys live with the people who sign (``mts mts1b-oms keygen`` writes one to a file only
its owner may read); services read public keys only, from a registry file. Needs the
``signing`` extra (``mts1b-platform[signing]``: PyNaCl).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, cast

import nacl.exceptions
import nacl.signing
from mts1b_foundation import (
    Clock,
    CommandReply,
    MtsError,
    ReplyCode,
    WireModel,
    parse_message,
)
from mts1b_foundation.commands import HaltTrading, ReduceTrading, ResumeTrading

from mts1b_platform.logging import get_logger

__all__ = ["DEFAULT_COMMAND_WINDOW", "MAX_COMMAND_WINDOW", "NONCE_RETENTION", "KeyFileError",
           "KeyRegistry", "KeyRegistryError", "NonceStore", "RegisteredKey", "Role",
           "SignedCommand", "SignedCommandVerifier", "SigningKey", "claim_nonce_in"]

DEFAULT_COMMAND_WINDOW = dt.timedelta(seconds=30)
"""How far a command's timestamp may lie from the receiver's clock, either way."""
MAX_COMMAND_WINDOW = dt.timedelta(hours=1)
"""The widest window a service may be configured with."""
NONCE_RETENTION = dt.timedelta(days=1)
"""How long a used nonce is kept. Longer than any window allows, so a command whose nonce has
been forgotten is stale whatever the window was or becomes: changing it never reopens a
replay."""

_log = get_logger("mts1b_platform.signing")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127}$")
_KEY_FILE_KIND = "mts1b-oms-signing-key"  # the OMS wrote the first key files; one kind for all
_PRIVATE_FIELDS = {"seed", "private_key", "secret", "secret_key", "signing_key"}
C = TypeVar("C", HaltTrading, ReduceTrading, ResumeTrading)
M = TypeVar("M", bound=WireModel)


class SignedCommand(Protocol):
    """What a signed command model offers the verifier."""

    COMMAND: ClassVar[str]

    @property
    def key_id(self) -> str: ...

    @property
    def nonce(self) -> str: ...

    @property
    def timestamp(self) -> dt.datetime: ...

    @property
    def signature(self) -> str: ...

    def signing_bytes(self) -> bytes: ...


class Role(StrEnum):
    """What a registered key may do."""

    OPERATIONS = "operations"
    """Halt, reduce a scope that is not HALTED, configure a fund without loosening a limit:
    the directions that only take risk off or keep it as it is."""
    RISK = "risk"
    """Resume, reduce a HALTED scope, loosen a fund's limits: the directions that raise
    limits."""



class KeyRegistryError(MtsError):
    """The key registry file cannot be used (named with the entry and field at fault)."""

    code = "PLATFORM.SIGNING.KEYS"  # OMS.KEYS until 2026-12-07: the OMS had it first


class KeyFileError(MtsError):
    """A private key file cannot be read or written. The message never holds its content."""

    code = "PLATFORM.SIGNING.KEY_FILE"  # OMS.KEY_FILE until 2026-12-07


def _b64_32(text: object) -> bytes | None:
    """The 32 bytes of standard base64 ``text``, or None."""
    if not isinstance(text, str) or len(text) != 44:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    """One public key of the registry: the name recorded as actor, and its roles."""

    name: str
    public_key: bytes
    roles: frozenset[Role]

    def verifies(self, command: SignedCommand) -> bool:
        """True when ``command.signature`` is this key's Ed25519 signature of its bytes."""
        try:
            signature = base64.b64decode(command.signature, validate=True)
            nacl.signing.VerifyKey(self.public_key).verify(command.signing_bytes(), signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
                nacl.exceptions.TypeError, binascii.Error, ValueError):
            return False
        return True

    def entry(self) -> dict[str, Any]:
        """This key as a registry entry (the JSON the registry file holds)."""
        return {"name": self.name, "public_key": base64.b64encode(self.public_key).decode(),
                "roles": sorted(r.value for r in self.roles)}


class KeyRegistry:
    """The public keys that may sign commands (trading state, fund limits), by name.

    The file is JSON: ``{"keys": [{"name": "ops-alice", "public_key": "<base64 of the 32-byte
    Ed25519 public key>", "roles": ["operations"]}, ...]}``. Names are unique ids (``A-Z a-z
    0-9 _ . : @ = + -``, at most 128), public keys unique, roles a non-empty subset of
    ``operations`` and ``risk``. Nothing else is accepted - an entry holding a private key
    field is refused by name, so a pasted seed is caught, and never echoed.
    """

    def __init__(self, keys: Iterable[RegisteredKey]) -> None:
        self._keys: dict[str, RegisteredKey] = {}
        seen: dict[bytes, str] = {}
        for key in keys:
            if key.name in self._keys:
                raise KeyRegistryError(f"key name {key.name!r} is registered twice", name=key.name)
            if key.public_key in seen:
                raise KeyRegistryError(f"keys {seen[key.public_key]!r} and {key.name!r} have the "
                                       "same public key", name=key.name)
            seen[key.public_key] = key.name
            self._keys[key.name] = key
        if not self._keys:
            raise KeyRegistryError("the key registry holds no key: nobody could sign a command")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyRegistry:
        """The registry in the JSON file at ``path``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyRegistryError(f"cannot read the key registry {os.fspath(path)}: "
                                   f"{type(exc).__name__}", path=os.fspath(path)) from None
        return cls.from_json(text, where=os.fspath(path))

    @classmethod
    def from_json(cls, text: str, *, where: str = "key registry") -> KeyRegistry:
        """The registry in JSON ``text`` (see the class docstring); ``where`` names it in
        errors."""
        try:
            data = json.loads(text)
        except ValueError:
            raise KeyRegistryError(f"{where}: not JSON", path=where) from None
        if not isinstance(data, dict) or set(data) != {"keys"} or not isinstance(
                data["keys"], list):
            raise KeyRegistryError(f'{where}: expected an object {{"keys": [...]}} and nothing '
                                   "else", path=where)
        return cls(_entry(item, i, where) for i, item in enumerate(data["keys"]))

    def to_json(self) -> str:
        """The registry file's text."""
        return json.dumps({"keys": [k.entry() for k in self]}, indent=1) + "\n"

    def get(self, name: str) -> RegisteredKey | None:
        return self._keys.get(name)

    def __iter__(self) -> Iterator[RegisteredKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)


def _entry(item: object, index: int, where: str) -> RegisteredKey:
    """One registry entry, or KeyRegistryError naming it and the field at fault (no value)."""
    at = f"{where}: keys[{index}]"
    if not isinstance(item, dict):
        raise KeyRegistryError(f"{at} is not an object", path=where, index=index)
    name = item.get("name")
    if isinstance(name, str) and _NAME.match(name):
        at = f"{at} ({name})"
    private = sorted(_PRIVATE_FIELDS & set(item))
    if private:
        raise KeyRegistryError(f"{at} holds a private key field {private[0]!r}: the registry "
                               "takes public keys only (and that key must now be replaced)",
                               path=where, index=index)
    extra = sorted(set(item) - {"name", "public_key", "roles"})
    if extra:
        raise KeyRegistryError(f"{at}: unknown field {extra[0]!r} (name, public_key and roles "
                               "only)", path=where, index=index)
    if not isinstance(name, str) or not _NAME.match(name):
        raise KeyRegistryError(f"{at}: name must be 1-128 of A-Z a-z 0-9 _ . : @ = + - "
                               "(starting with a letter, digit or _)", path=where, index=index)
    public = _b64_32(item.get("public_key"))
    if public is None:
        raise KeyRegistryError(f"{at}: public_key must be the 32-byte Ed25519 public key in "
                               "standard base64 (44 characters)", path=where, index=index)
    roles = item.get("roles")
    known = {r.value for r in Role}
    if (not isinstance(roles, list) or not roles or len(set(map(str, roles))) != len(roles)
            or not all(isinstance(r, str) and r in known for r in roles)):
        raise KeyRegistryError(f"{at}: roles must be a non-empty list of distinct roles from "
                               f"{sorted(known)}", path=where, index=index)
    return RegisteredKey(name, public, frozenset(Role(r) for r in roles))


class SigningKey:
    """A private Ed25519 key with the name it is registered under: what signs commands.

    The key file is JSON, ``{"kind": "mts1b-oms-signing-key", "name": ..., "seed": "<base64 of
    the 32-byte seed>"}``, readable by its owner only (created 0600; :meth:`load` refuses a
    file that group or others may read, as ssh does). Neither ``repr`` nor any error shows
    the seed.
    """

    __slots__ = ("_key", "name")

    def __init__(self, name: str, key: nacl.signing.SigningKey) -> None:
        if not _NAME.match(name):
            raise KeyFileError("a key's name must be 1-128 of A-Z a-z 0-9 _ . : @ = + - "
                               "(starting with a letter, digit or _)")
        self.name = name
        self._key = key

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """A new random key (from the operating system's CSPRNG, through libsodium)."""
        return cls(name, nacl.signing.SigningKey.generate())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """The key in the file at ``path``; KeyFileError says why not, never with content."""
        where = os.fspath(path)
        try:
            with open(where, "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                raw = handle.read(4096)
        except OSError as exc:
            raise KeyFileError(f"cannot read the key file {where}: {type(exc).__name__}",
                               path=where) from None
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"the key file {where} may be read by others (mode "
                               f"{stat.S_IMODE(mode):o}): chmod 600 it, and replace the key if "
                               "someone else could have read it", path=where)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            data = None
        seed = _b64_32(data.get("seed")) if isinstance(data, dict) else None
        name = data.get("name") if isinstance(data, dict) else None
        if (seed is None or not isinstance(name, str) or not isinstance(data, dict)
                or data.get("kind") != _KEY_FILE_KIND):
            raise KeyFileError(f"{where} is not an MTS1B signing key file (one written by `mts "
                               "mts1b-oms keygen` or `mts mts1b-operations audit keygen`; a key "
                               "registry of public keys is not one)", path=where)
        return cls(name, nacl.signing.SigningKey(seed))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key file, mode 0600; refuses to replace an existing file.

        A missing folder is created, mode 0700 (as ``ssh-keygen`` makes ``~/.ssh``): the first
        key on a new machine usually goes to ``~/.mts/``, which nothing else has made yet.
        """
        where = os.fspath(path)
        text = json.dumps({"kind": _KEY_FILE_KIND, "name": self.name,
                           "seed": base64.b64encode(bytes(self._key)).decode()}) + "\n"
        try:
            Path(where).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{where} exists: a key file is never overwritten",
                               path=where) from None
        except OSError as exc:
            raise KeyFileError(f"cannot create the key file {where}: {type(exc).__name__}",
                               path=where) from None
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)  # whatever the umask left
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def registered(self, roles: Iterable[Role | str]) -> RegisteredKey:
        """This key's public half as a registry entry with ``roles``."""
        return RegisteredKey(self.name, self.public_key, frozenset(Role(r) for r in roles))

    def sign(self, command: type[C], scope: str, scope_id: str, reason: str, *,
             now: dt.datetime | None = None, nonce: str | None = None) -> C:
        """A trading-state ``command`` (HaltTrading, ReduceTrading or ResumeTrading) for the
        scope, signed now with a fresh random nonce (both may be given, for tests)."""
        return self.sign_command(command, {"scope": scope, "scope_id": scope_id,
                                           "reason": reason}, now=now, nonce=nonce)

    def sign_command(self, command: type[M], fields: Mapping[str, Any], *,
                     now: dt.datetime | None = None, nonce: str | None = None) -> M:
        """Any signed command model (one with ``key_id``, ``nonce``, ``timestamp``,
        ``signature`` and ``signing_bytes()``) built from ``fields``, signed by this key now
        with a fresh random nonce (both may be given, for tests).

        The bytes signed are the validated command's own :meth:`signing_bytes`, so what the
        receiver rebuilds from the message is exactly what was signed. Bad fields raise
        ``ValidationFailed`` naming them.
        """
        unsigned = parse_message(command, {
            **fields, "key_id": self.name,
            "nonce": nonce if nonce is not None else secrets.token_hex(16),
            "timestamp": now if now is not None else dt.datetime.now(dt.UTC),
            "signature": "A" * 86 + "=="})
        signed_bytes = cast(SignedCommand, unsigned).signing_bytes()
        signature = self._key.sign(signed_bytes).signature
        return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode()})

    def __repr__(self) -> str:
        return f"SigningKey(name={self.name!r}, public_key={_b64(self.public_key)!r})"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class NonceStore(Protocol):
    """Where used nonces are kept (both OMS stores: PostgreSQL durably, the in-memory store for
    tests)."""

    async def claim_nonce(self, key_id: str, nonce: str, *, command: str,
                          signed_at: dt.datetime, now: dt.datetime,
                          forget_before: dt.datetime) -> bool:
        """Record that ``key_id`` used ``nonce`` (for ``command``, signed at ``signed_at``);
        False if it already had. Nonces signed before ``forget_before`` may be dropped first
        (their commands are stale whatever they carry)."""
        ...



async def claim_nonce_in(pool: Any, key_id: str, nonce: str, *, command: str,
                         signed_at: dt.datetime, now: dt.datetime,
                         forget_before: dt.datetime) -> bool:
    """:meth:`NonceStore.claim_nonce` on a PostgreSQL pool (an ``asyncpg.Pool``) whose schema
    has a ``command_nonces`` table (key_id, nonce primary key; command, signed_at, used_at):
    False if the key used the nonce before. The primary key decides, so two instances given
    the same command at once apply it once; rows signed before ``forget_before`` are dropped
    in the same transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM command_nonces WHERE signed_at < $1", forget_before)
        claimed = await conn.fetchval(
            "INSERT INTO command_nonces (key_id, nonce, command, signed_at, used_at) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            key_id, nonce, command, signed_at, now)
    return bool(claimed)


class SignedCommandVerifier:
    """Checks signed commands (see the module docstring for the order): registered key,
    signature, role, time window, fresh nonce."""

    refusal_message = "signed command refused"
    """The message of the WARNING line a refusal logs (a subclass names its commands)."""

    def __init__(self, registry: KeyRegistry, nonces: NonceStore, *, clock: Clock,
                 window: dt.timedelta = DEFAULT_COMMAND_WINDOW, receiver: str = "service",
                 logger: Any = None) -> None:
        if not dt.timedelta(0) < window <= MAX_COMMAND_WINDOW:
            raise KeyRegistryError(f"the command window must be above 0 and at most "
                                   f"{MAX_COMMAND_WINDOW.total_seconds():g} s, got "
                                   f"{window.total_seconds():g} s")
        self.registry = registry
        self.nonces = nonces
        self.clock = clock
        self.window = window
        self.receiver = receiver
        self._log = logger if logger is not None else _log

    async def check(self, command: SignedCommand, role: Role | None, *,
                    why_role: str = "", log: Mapping[str, str] | None = None
                    ) -> RegisteredKey | CommandReply:
        """The registered key that signed ``command`` when every check passes (``role``
        ``None``: any registered key), else the refusal to answer with. ``why_role`` is added
        to a role refusal's message; ``log`` to the refusal's log line."""
        now = self.clock.now()
        extra = dict(log or {})
        key = self.registry.get(command.key_id)
        if key is None:
            return self._refuse(ReplyCode.UNAUTHORIZED, command, now, extra,
                           f"key {command.key_id!r} is not registered with this "
                           f"{self.receiver}")
        if not key.verifies(command):
            return self._refuse(ReplyCode.SIGNATURE_INVALID, command, now, extra,
                           f"the signature does not verify with key {key.name!r}")
        if role is not None and role not in key.roles:
            return self._refuse(ReplyCode.UNAUTHORIZED, command, now, extra,
                           f"key {key.name!r} may not {command.COMMAND}{why_role}: that needs "
                           f"the role {role.value!r}")
        skew = (now - command.timestamp).total_seconds()
        if abs(skew) > self.window.total_seconds():
            side = "old" if skew > 0 else f"ahead of this {self.receiver}'s clock"
            return self._refuse(ReplyCode.STALE_COMMAND, command, now, extra,
                           f"signed {abs(skew):.1f} s {side}; commands are taken within "
                           f"{self.window.total_seconds():g} s")
        try:
            fresh = await self.nonces.claim_nonce(
                key.name, command.nonce, command=command.COMMAND, signed_at=command.timestamp,
                now=now, forget_before=now - NONCE_RETENTION)
        except Exception as exc:  # the store is away: refuse, never apply unrecorded
            self._log.error("could not record a signed command's nonce", key_id=key.name,
                       command=command.COMMAND, error=type(exc).__name__)
            return CommandReply(ok=False, code=ReplyCode.INTERNAL_ERROR, ts=now,
                                message="could not record the command's nonce "
                                        f"({type(exc).__name__}); nothing changed: sign it "
                                        "again and retry")
        if not fresh:
            return self._refuse(ReplyCode.REPLAY_REFUSED, command, now, extra,
                           f"key {key.name!r} already used this nonce: a command is applied "
                           "once")
        return key

    def _refuse(self, code: ReplyCode, command: SignedCommand, now: dt.datetime,
                log: Mapping[str, str], message: str) -> CommandReply:
        self._log.warning(self.refusal_message, code=code.value, command=command.COMMAND,
                          key_id=command.key_id, why=message, **log)
        return CommandReply(ok=False, code=code, message=message, ts=now,
                            context={"command": command.COMMAND, "key_id": command.key_id})
