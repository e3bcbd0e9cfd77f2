"""Credentials in URLs and DSNs, in every form a setting or a driver writes them, never survive
:func:`redact` / :func:`redact_url`; what is not a credential is left readable."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mts1b_platform import redaction
from mts1b_platform.redaction import (
    MASK,
    redact,
    redact_url,
    register_secret,
    register_url_secrets,
)


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    redaction.clear_secrets()
    yield
    redaction.clear_secrets()


@pytest.mark.parametrize(("text", "expected"), [
    ("nats://trader:s3cret@127.0.0.1:4222", "nats://trader:***@127.0.0.1:4222"),
    ("nats://tok3n-abc@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
    ("nats://:tok3n-abc@h:4222", "nats://:***@h:4222"),
    ("nats://u:p%40ss%3Aw0rd@h:1", "nats://u:***@h:1"),
    ("nats://u:p@ss@[::1]:4222", "nats://u:***@[::1]:4222"),
    ("tls://u:pw@[2001:db8::1]:4443", "tls://u:***@[2001:db8::1]:4443"),
    ("nats://u:pw1@h1:4222,nats://tok2@h2:4222,nats://h3:4222",
     "nats://u:***@h1:4222,nats://***@h2:4222,nats://h3:4222"),
    ("a nats://u:pw1@h1 and b postgresql://v:pw2@db/x", "a nats://u:***@h1 and b "
                                                         "postgresql://v:***@db/x"),
    ("postgresql://trader:pa55word@db:5432/mts", "postgresql://trader:***@db:5432/mts"),
    ("postgresql://postgres@127.0.0.1:5432/postgres",
     "postgresql://postgres@127.0.0.1:5432/postgres"),
    ("postgresql://u@db/x?password=pw&sslpassword=pw2&sslmode=require",
     "postgresql://u@db/x?password=***&sslpassword=***&sslmode=require"),
    ("host=db user=u password=pw dbname=x", "host=db user=u password=*** dbname=x"),
    ("Server=db;User Id=u;Password=pw;", "Server=db;User Id=u;Password=***;"),
    ("PGPASSWORD=pw psql", "PGPASSWORD=*** psql"),
    ("https://ghp_abcdef123@github.com/org/repo", "https://***@github.com/org/repo"),
    ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
    ('{"url": "nats://u:p\\"w@h", "mail": "a@b"}', '{"url": "nats://u:***@h", "mail": "a@b"}'),
    ("['nats://u:p\\'w@h']", "['nats://u:***@h']"),
    ("Error: nats://trader:s3cret@[::1", "Error: nats://trader:***@[::1"),
    ("vault hvs.CAESIJ0123456789abcdefghijklmn ok", "vault *** ok"),
    ("legacy s.0123456789abcdefghijklmn ok", "legacy *** ok"),
    ("seed SUAM3CDMPZZ5V3ZLY3CN6YBV2OMDSZ5IWSGWQJ3BNGKIKNMIKGUNBRPQUA end", "seed *** end"),
])
def test_credentials_in_urls_and_dsns(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "order ord-1 filled 100 @ 10.5 on nats://127.0.0.1:4222 token_count=3",
    "mail bob@example.com about nats://[::1]:4222",
    "ssh://git@github.com/org/repo",
    "see https://docs.nats.io/running-a-nats-service?x=1#auth",
])
def test_what_is_no_credential_stays(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(("url", "expected"), [
    ("nats://u:pw@h1:4222,u2:pw2@h2:4222", "nats://u:***@h1:4222,u2:***@h2:4222"),
    ("trader:pw@127.0.0.1:4222", "trader:***@127.0.0.1:4222"),
    ("tok3n@127.0.0.1:4222", "***@127.0.0.1:4222"),
    ("nats://u:p,ss@h:4222", "***,***@h:4222"),  # a raw comma splits the password
    ("nats://tok@[::1", "nats://***@[::1"),
    ("nats://h1:4222, nats://h2:4222", "nats://h1:4222, nats://h2:4222"),
    ("postgresql://u:pw@db/x?email=a@b", "postgresql://u:***@db/x?email=a@b"),
])
def test_redact_url_masks_every_entry_of_a_server_list(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_register_url_secrets_masks_the_values_anywhere() -> None:
    register_url_secrets("nats://u:p%40ssword1@h,nats://tok3n-xyz@h2,postgresql://postgres@db")
    text = "driver said p@ssword1, then p%40ssword1 and tok3n-xyz; user postgres"
    assert redact(text) == "driver said ***, then *** and ***; user postgres"


# A password or token as a generator would make one: unreserved characters plus percent-encoded
# anything, so the encoder's output and the raw forms are both exercised.
_raw = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")),
               min_size=6, max_size=24)
_hosts = st.sampled_from(["127.0.0.1", "[::1]", "[2001:db8::7]", "nats.example.com",
                          "db-1.internal"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=_raw, user=st.sampled_from(["", "trader", "u.s-e_r"]), host=_hosts,
       scheme=st.sampled_from(["nats", "tls", "ws", "postgresql", "https"]),
       port=st.integers(1, 65535), others=st.integers(0, 2), encode=st.booleans(),
       wrap=st.sampled_from(["{}", "at {}: refused", "'{}'", '"{}"', "[{}]", "url={} x"]))
def test_no_generated_credential_survives(secret: str, user: str, host: str, scheme: str,
                                          port: int, others: int, encode: bool,
                                          wrap: str) -> None:
    written = urllib.parse.quote(secret, safe="") if encode else secret
    # A raw password must still be a URL: no whitespace, no path/query/fragment delimiter.
    assume(encode or not any(c in secret for c in "/?#\"'<>`\\,[]"))
    assume(user or scheme != "postgresql")  # postgresql://name@host: a user name, not masked
    # a raw token with a colon is a user name and a password to every URL parser (nats-py's
    # included: "nats://00000:@h" is user "00000", password ""): only the encoded form is a token
    assume(user or encode or ":" not in secret)
    userinfo = f"{user}:{written}" if user else written
    entries = [f"{scheme}://{userinfo}@{host}:{port}"]
    entries += [f"{scheme}://{host}:{port + i}" for i in range(others)]
    url = ",".join(entries)
    text = wrap.format(url)
    for out in (redact(text), redact_url(url), redact(json.dumps({"url": url}))):
        assert written not in out
        assert MASK in out


def test_a_registered_secret_inside_a_url_is_masked_once() -> None:
    register_secret("s3cret-value")
    assert redact("nats://u:s3cret-value@h") == "nats://u:***@h"
