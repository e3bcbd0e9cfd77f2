"""Reading a PostgreSQL DSN before a driver does (``mts1b_platform.dsn``): where it points
without its password, and what is wrong with it in words that quote none of it."""

from __future__ import annotations

import pytest
from mts1b_platform.dsn import DsnProblem, dsn_target, shown_dsn


def test_the_target_names_hosts_database_and_user_never_the_password() -> None:
    assert dsn_target("postgresql://u:s3cret-pw@db.internal:5433/mts") == (
        "db.internal:5433/mts (user u)")
    assert dsn_target("postgres://h1:5432,[::1]:5433/mts") == "h1:5432,[::1]:5433/mts"
    assert dsn_target("postgresql:///mts") == "(default host)/mts"
    assert dsn_target("postgresql://u%40corp:p%40ss@h") == "h/(default database) (user u@corp)"
    assert dsn_target("postgresql://h/db?sslmode=require&application_name=x") == "h/db"


@pytest.mark.parametrize(("dsn", "problem"), [
    ("not a dsn", "it is not a URL"),
    ("mysql://u:s3cret@h/db", "its scheme is not postgresql://"),
    ("postgresql://u:s3cret@h:x/db", "its port is not a number from 1 to 65535"),
    ("postgresql://u:s3cret@h:70000/db", "its port is not a number from 1 to 65535"),
    ("postgresql://u:s3cret@h1,,h2/db", "a host of it is empty"),
    ("postgresql://u:s3c@ret@h/db", "it has an @ besides the one before the host"),
    ("postgresql://u:s3cret@[::1/db", "its host is not a name"),
    ("postgresql://u:s3cret@h/db?sslmode", "its query is not key=value pairs"),
])
def test_each_problem_is_named_without_quoting_the_dsn(dsn: str, problem: str) -> None:
    with pytest.raises(DsnProblem) as refused:
        dsn_target(dsn)
    assert refused.value.problem.startswith(problem)
    assert "s3c" not in refused.value.problem and "s3c" not in shown_dsn(dsn)


def test_an_at_the_parser_cannot_place_hides_the_whole_dsn() -> None:
    # u:12/pw@h would read as host u, port 12: the password's / was not percent-encoded
    assert shown_dsn("postgresql://u:12/pw@h/db") == "***"
    assert shown_dsn("postgresql://u:a@b@h/db") == "***"
    assert "s3cret" not in shown_dsn("postgresql://u:s3cret@h/db")
