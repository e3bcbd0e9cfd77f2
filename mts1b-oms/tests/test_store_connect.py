"""The OMS store opens through the platform's DSN guard, as every library's database does.

Before, a malformed ``--dsn`` (``serve``, ``status``, ``halt``) ended in "the command failed
unexpectedly (ValueError)", and a refused connection printed asyncpg's exception text."""

from __future__ import annotations

import pytest
from mts1b_oms.orderstore import StoreError
from mts1b_oms.store import Store


async def test_a_refused_server_is_named_without_the_password() -> None:
    with pytest.raises(StoreError) as refused:
        await Store.open("postgresql://ops:s3cret-pw@127.0.0.1:1/books", schema="oms_unused")
    assert str(refused.value) == ("[OMS.STORE] cannot connect to PostgreSQL at 127.0.0.1:1/books "
                                  "(user ops): ConnectionRefusedError")


@pytest.mark.parametrize(("dsn", "problem"), [
    ("postgresql://ops:s3cret-pw@127.0.0.1:notaport/books",
     "its port is not a number from 1 to 65535"),
    ("postgresql://ops:s3c@ret@127.0.0.1/books", "it has an @ besides the one before the host"),
    ("ops:s3cret-pw@127.0.0.1/books", "it is not a URL"),
])
async def test_a_malformed_dsn_is_one_line_naming_the_option(dsn: str, problem: str) -> None:
    with pytest.raises(StoreError) as malformed:
        await Store.open(dsn, schema="oms_unused")
    text = str(malformed.value)
    assert problem in text and "(--dsn or $MTS_DATABASE_URL)" in text
    assert "s3c" not in text
