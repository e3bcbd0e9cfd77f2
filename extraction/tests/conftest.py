"""Where the cross-library tests find their servers, and a skip that says why when one is down.

The addresses come from the environment the project uses everywhere (``MTS_NATS_URL``,
``MTS_DATABASE_URL``; ``mts dev up --export`` prints them), with the loopback defaults of
``mts1b_platform.devservices``: ``python3 dev.py test`` runs this folder once against the
servers on the standard ports and once against NATS and PostgreSQL 18 started from the wheels
on free ports, so nothing here may assume a port.

Every test that touches a server names its own NATS namespace and PostgreSQL schemas
(:func:`unique`) and removes them afterwards, so it can run beside any other test.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


def unique(prefix: str) -> str:
    """A lower-case name no other test run uses: a NATS namespace or a schema prefix."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def _unreachable() -> str | None:
    """Why the servers cannot be used (``None``: both answer, JetStream on)."""
    from mts1b_platform.bus import Bus, BusError

    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return f"PostgreSQL not reachable at MTS_DATABASE_URL={DSN}"
    await conn.close()
    try:
        bus = await Bus.connect(namespace=unique("probe"), connect_timeout=2)
    except BusError as exc:
        return f"NATS not reachable at MTS_NATS_URL={NATS_URL}: {exc.message}"
    await bus.drain()
    return None


@dataclass(frozen=True)
class Servers:
    """The servers a test module runs against (test modules cannot import this file under
    ``--import-mode=importlib``: they take the :func:`servers` fixture)."""

    dsn: str
    nats_url: str

    @staticmethod
    def unique(prefix: str) -> str:
        return unique(prefix)

    async def drop_schemas(self, *schemas: str) -> None:
        """Remove the PostgreSQL schemas a test made (with everything in them)."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def servers() -> Servers:
    """NATS (JetStream) and PostgreSQL, or a skip naming the server and its address that did
    not answer (``python3 dev.py test`` and ``mts dev up`` start them; so does the compose
    file here)."""
    reason = asyncio.run(_unreachable())
    if reason is not None:
        pytest.skip(f"{reason} (start them with `mts dev up` or "
                    "`docker compose -f extraction/tests/docker-compose.yml up -d`)")
    return Servers(DSN, NATS_URL)
