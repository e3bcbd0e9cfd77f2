"""Key shares encrypted to the operators' OpenPGP keys: never readable where the bootstrap ran;
the bootstrap waits while the operators decrypt theirs and unseal the server. Needs gpg."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
from mts1b_deploy import BootstrapOptions, BootstrapReport, VaultBootstrapError, bootstrap
from mts1b_deploy.pgpkeys import pgp_key_base64

BaoServer = Any  # conftest's fixture type

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")]


@pytest.fixture(autouse=True)
def _no_agent_left(tmp_path: Path) -> Iterator[None]:
    """gpg starts an agent per home and leaves it running: stop each one the test made."""
    yield
    for home in tmp_path.glob("gnupg-*"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       check=False, capture_output=True)


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    env = {**os.environ, "GNUPGHOME": str(home)}
    done = subprocess.run(["gpg", "--batch", "--quiet", *args], input=data, env=env,
                          capture_output=True, check=True)
    return done.stdout


def _operators(tmp_path: Path, count: int) -> list[tuple[Path, Path]]:
    """``count`` operators, each a GnuPG home with an RSA key and the armored public key."""
    out = []
    for i in range(1, count + 1):
        home = tmp_path / f"gnupg-{i}"
        home.mkdir(mode=0o700)
        _gpg(home, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
             f"op{i} <op{i}@example.org>", "rsa2048", "encr", "never")
        public = tmp_path / f"op{i}.asc"
        public.write_bytes(_gpg(home, "--armor", "--export", f"op{i}@example.org"))
        out.append((home, public))
    return out


def _operators_unseal(bao: BaoServer, out: Path, operators: list[tuple[Path, Path]]) -> None:
    """What the operators do while the bootstrap waits: each decrypts their share with their
    own key and submits it (as `bao operator unseal` does)."""
    deadline = time.monotonic() + 30
    while len(list((out / "unseal").glob("*.pgp"))) < len(operators):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client = hvac.Client(url=bao.addr)
    while not client.sys.is_initialized():
        time.sleep(0.05)
    for i, (home, _) in enumerate(operators, start=1):
        encrypted = base64.b64decode((out / "unseal" / f"share-{i}.pgp").read_text())
        client.sys.submit_unseal_key(_gpg(home, "--decrypt", data=encrypted).decode().strip())


def _in_thread(options: BootstrapOptions) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(bootstrap(options, log=lambda line: result.append(line)))
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_shares_encrypted_to_operators(bao: BaoServer, tmp_path: Path) -> None:
    operators = _operators(tmp_path, 2)
    binary = _gpg(operators[0][0], "--export", "op1@example.org")
    assert pgp_key_base64(operators[0][1]) == base64.b64encode(binary).decode()
    out = tmp_path / "out"
    options = BootstrapOptions(addr=bao.addr, out_dir=out, shares=2, threshold=2,
                               pgp_keys=tuple(public for _, public in operators),
                               unseal_wait=60)
    thread, result = _in_thread(options)
    _operators_unseal(bao, out, operators)
    thread.join(60)
    report = result[-1]
    assert isinstance(report, BootstrapReport), report
    assert "each encrypted to its operator's PGP key (op1.asc, op2.asc)" in report.changed[0]
    assert "unsealed by the operators" in report.changed
    assert "root token revoked" in report.changed
    assert any("waiting up to 60 s for the operators" in str(line) for line in result)
    assert sorted(p.name for p in (out / "unseal").iterdir()) == ["share-1.pgp", "share-2.pgp"]

    bao.restart()  # sealed again; nothing here can unseal it, the operators can
    with pytest.raises(VaultBootstrapError, match="encrypted to the operators' PGP keys"):
        bootstrap(BootstrapOptions(addr=bao.addr, out_dir=out, shares=2, threshold=2,
                                   unseal_wait=0))
    with pytest.raises(VaultBootstrapError, match="did not unseal the server within 1 s"):
        bootstrap(BootstrapOptions(addr=bao.addr, out_dir=out, shares=2, threshold=2,
                                   unseal_wait=1))
    thread, result = _in_thread(options)
    _operators_unseal(bao, out, operators)
    thread.join(60)
    assert isinstance(result[-1], BootstrapReport), result[-1]
    assert result[-1].changed == ["unsealed by the operators"]


def test_bad_pgp_options(tmp_path: Path) -> None:
    not_a_key = tmp_path / "x.asc"
    not_a_key.write_text("hello\n")
    with pytest.raises(VaultBootstrapError, match="not an OpenPGP public key"):
        pgp_key_base64(not_a_key)
    with pytest.raises(VaultBootstrapError, match=r"1 key\(s\) for 3 shares"):
        BootstrapOptions(addr="http://127.0.0.1:1", out_dir=tmp_path, pgp_keys=(not_a_key,),
                         shares=3, threshold=2)
