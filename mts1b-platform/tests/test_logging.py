"""Structured logging and the redaction filter, including a property test over generated secrets."""

from __future__ import annotations

import io
import json
import logging
import string
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mts1b_platform import logging as mts_logging
from mts1b_platform import redaction
from mts1b_platform.logging import configure_logging, get_logger, set_service
from mts1b_platform.redaction import MASK, redact, register_secret


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    redaction.clear_secrets()
    yield
    redaction.clear_secrets()


@pytest.fixture(autouse=True)
def _restore_service() -> Iterator[None]:
    """The service name is process-wide; what a test names must not reach the next one."""
    saved = mts_logging._service
    yield
    mts_logging._service = saved


def _json_lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_json_line_fields() -> None:
    buf = io.StringIO()
    configure_logging("oms", fmt="json", stream=buf, level="DEBUG")
    log = get_logger("mts1b_oms.engine", fund_id="fund-a")
    log.info("order %s accepted", "ord-1", order_id="ord-1", qty=3)
    (line,) = _json_lines(buf)
    assert line["level"] == "INFO"
    assert line["service"] == "oms"
    assert line["logger"] == "mts1b_oms.engine"
    assert line["message"] == "order ord-1 accepted"
    assert line["fund_id"] == "fund-a"
    assert line["order_id"] == "ord-1"
    assert line["qty"] == 3
    assert str(line["timestamp"]).endswith("Z")


def test_bind_and_console_format() -> None:
    buf = io.StringIO()
    configure_logging("svc", fmt="console", stream=buf)
    log = get_logger("x").bind(fund_id="f1")
    log.warning("careful", order_id="o1")
    out = buf.getvalue()
    assert "WARNING [svc] x: careful" in out
    assert "fund_id=f1 order_id=o1" in out


def test_set_service_names_every_line_and_keeps_the_setup() -> None:
    """What `serve` commands call: the name changes, the handler, level and format the `mts`
    command chose do not."""
    buf = io.StringIO()
    handler = configure_logging(fmt="json", stream=buf, level="WARNING")
    set_service("")
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    log = get_logger("mts1b_oms.service")
    log.warning("unnamed")
    set_service("oms")
    log.warning("named")
    log.info("below the level")
    logging.getLogger("thirdparty").error("plain")
    assert (list(root.handlers), root.level) == before
    assert handler in root.handlers
    unnamed, named, plain = _json_lines(buf)
    assert "service" not in unnamed  # nothing named it: no field rather than "" or a guess
    assert named["service"] == "oms"
    assert plain["service"] == "oms"

    console = io.StringIO()
    configure_logging(fmt="console", stream=console)
    log.warning("at a terminal")
    set_service("")
    log.warning("unnamed again")
    first, second = console.getvalue().splitlines()
    assert first.endswith("WARNING [oms] mts1b_oms.service: at a terminal")
    assert second.endswith("WARNING mts1b_oms.service: unnamed again")


def test_a_record_can_name_its_own_service() -> None:
    buf = io.StringIO()
    configure_logging("oms", fmt="json", stream=buf)
    logging.getLogger("x").warning("relayed", extra={"service": "relay"})
    (line,) = _json_lines(buf)
    assert line["service"] == "relay"


def test_bad_level_or_format_changes_nothing() -> None:
    buf = io.StringIO()
    handler = configure_logging("svc", fmt="json", stream=buf, level="INFO")
    with pytest.raises(ValueError, match="log level must be one of"):
        configure_logging(level="chatty", stream=io.StringIO())
    with pytest.raises(ValueError, match="log format must be"):
        configure_logging(fmt="xml", stream=io.StringIO())  # type: ignore[arg-type]
    assert handler in logging.getLogger().handlers
    assert logging.getLogger().level == logging.INFO


def test_caller_location_is_the_callers(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("svc", fmt="json", stream=io.StringIO())
    with caplog.at_level(logging.INFO):
        get_logger("loc").info("here")
    (record,) = [r for r in caplog.records if r.name == "loc"]
    assert record.funcName == "test_caller_location_is_the_callers"
    assert record.filename == "test_logging.py"


def test_trace_ids_are_added_inside_a_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    buf = io.StringIO()
    configure_logging("svc", fmt="json", stream=buf)
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("op") as span:
        get_logger("t").info("inside")
    (line,) = _json_lines(buf)
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("Authorization: Bearer abc.DEF-123", "abc.DEF-123"),
        ("headers={'authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ("sent bearer tok_live_9f8e7d", "tok_live_9f8e7d"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl ok", "c2lnbmF0dXJl"),
        ("password=hunter2 user=bob", "hunter2"),
        ('{"client_secret": "s3cr3t!", "id": 1}', "s3cr3t!"),
        ("api_key: AKIA123 token='t0k3n value'", "AKIA123"),
        ("db_password=pw1; next", "pw1"),
        ("dsn postgresql://trader:pa55word@db:5432/mts", "pa55word"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
         "MIIEpAIBAAKCAQEA"),
    ],
)
def test_patterns(text: str, leaked: str) -> None:
    out = redact(text)
    assert leaked not in out
    assert MASK in out


def test_non_secrets_are_left_alone() -> None:
    text = "order ord-1 filled 100 @ 10.5 on nats://127.0.0.1:4222 token_count=3"
    assert redact(text) == text.replace("token_count=3", "token_count=3")


def test_short_registered_values_are_ignored() -> None:
    register_secret("abc")
    assert redact("abcdef") == "abcdef"


# Secrets as a generator would make them: any printable characters, including quotes,
# backslashes and non-ASCII, so the JSON encoder's escaping is exercised too.
_secret_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=redaction.MIN_SECRET_LENGTH, max_size=40,
).filter(lambda s: s.strip() == s and s != "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secrets=st.lists(_secret_text, min_size=1, max_size=3, unique=True),
       fmt=st.sampled_from(["json", "console"]),
       filler=st.text(alphabet=string.ascii_letters + " ", max_size=20))
def test_registered_secrets_never_reach_the_output(secrets: list[str], fmt: str,
                                                   filler: str) -> None:
    redaction.clear_secrets()
    buf = io.StringIO()
    configure_logging("svc", fmt=fmt, stream=buf)  # type: ignore[arg-type]
    log = get_logger("prop", fund_id="fund-1")

    def emit_everything(values: list[str]) -> None:
        for secret in values:
            log.info(f"message {filler}{secret}{filler}")              # in the message
            log.info("args %s and %r", secret, secret)                 # in %-arguments
            log.info("ctx", note=f"x{secret}x", nested={"k": [secret]})  # in context fields
            try:
                raise ValueError(f"driver said {secret!r}")
            except ValueError:
                log.exception("failed")                                # in exception text
            logging.getLogger("thirdparty").error("plain %s", secret)  # stdlib logger

    # A secret that the lines contain whatever is logged (e.g. "INFO" or '": "') is no leak.
    emit_everything([f"<placeholder-{i}>" for i in range(len(secrets))])
    baseline = buf.getvalue()
    for secret in secrets:
        assume(secret not in baseline)
    buf.seek(0)
    buf.truncate()

    for secret in secrets:
        register_secret(secret)
    emit_everything(secrets)
    out = buf.getvalue()
    assert out
    for secret in secrets:
        assert secret not in out
        assert json.dumps(secret, ensure_ascii=False)[1:-1] not in out
        assert json.dumps(secret)[1:-1] not in out
        assert repr(secret)[1:-1] not in out


def test_first_line_configures_json_on_a_pipe() -> None:
    import subprocess
    import sys

    code = ("from mts1b_platform.logging import get_logger; "
            "get_logger('svc.x', fund_id='f1').info('hello password=hunter2')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"MTS_SERVICE": "svc", "PATH": ""}, check=True)
    line = json.loads(done.stderr)
    assert line["message"] == "hello password=***"
    assert (line["service"], line["logger"], line["fund_id"]) == ("svc", "svc.x", "f1")


def test_an_unnamed_process_writes_no_service_field() -> None:
    import subprocess
    import sys

    code = "from mts1b_platform.logging import get_logger; get_logger('x').warning('hi')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PATH": ""}, check=True)
    line = json.loads(done.stderr)
    assert "service" not in line
    assert (line["logger"], line["message"]) == ("x", "hi")


def test_existing_logging_setup_is_respected() -> None:
    import subprocess
    import sys

    code = ("import logging; logging.basicConfig(format='OWN %(message)s'); "
            "from mts1b_platform.logging import get_logger; "
            "get_logger('x').warning('token=abc123 here')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stderr.strip() == "OWN token=*** here"


def test_the_default_handler_follows_a_swapped_and_closed_stderr(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A command run in-process swaps sys.stderr and closes it; later lines go to the new one.

    Reproduces a CLI test that ran ``halt`` then ``resume`` through a runner in one process:
    the handler kept the first runner's (closed) stream and the next log line printed
    "--- Logging error ---" into the second command's stderr.
    """
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    configure_logging(fmt="json", level="INFO")
    try:
        get_logger("swap.test").info("one")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr("sys.stderr", second)
        get_logger("swap.test").info("two")
        assert [line["message"] for line in _json_lines(second)] == ["two"]
        assert "Logging error" not in second.getvalue()
    finally:
        monkeypatch.undo()
        configure_logging(fmt="json", level="WARNING")
