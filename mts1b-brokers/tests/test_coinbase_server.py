"""The Coinbase stand-in verifies JWTs as Coinbase does and speaks the user channel's format.

These tests talk to :class:`CoinbaseServer` with the official SDK (``RESTClient``) and a plain
WebSocket client, so what is checked is the wire: who gets a 401 and why, what the user
channel sends and in which order, when an idle channel is closed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("coinbase", reason="needs the coinbase extra (coinbase-advanced-py)")

import jwt
import requests
from coinbase import jwt_generator
from coinbase.rest import RESTClient
from coinbase.websocket.types.websocket_response import WebsocketResponse
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from mts1b_brokers.testing.coinbase_server import CoinbaseServer
from mts1b_brokers.testing.coinbase_tls import ApiKey, new_api_key
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


@pytest.fixture
async def server() -> AsyncIterator[CoinbaseServer]:
    async with CoinbaseServer(new_api_key("EdDSA"), heartbeat_interval=0.05,
                              idle_timeout=0.4) as srv:
        yield srv


def _client(srv: CoinbaseServer, key: ApiKey | None = None) -> RESTClient:
    key = key or srv.key
    client = RESTClient(api_key=key.name, api_secret=key.secret, base_url=srv.base_url,
                        timeout=5)
    client.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the test CA
    client.session.verify = str(srv.ca_file)
    return client


async def _raw(srv: CoinbaseServer, token: str) -> requests.Response:
    """GET /accounts with ``token`` (in a thread: the server runs on this loop)."""
    session = requests.Session()
    session.trust_env = False
    return await asyncio.to_thread(
        session.get, f"https://{srv.base_url}/api/v3/brokerage/accounts",
        verify=str(srv.ca_file), headers={"Authorization": f"Bearer {token}"}, timeout=5)


def _token(key: ApiKey, **claims: Any) -> str:
    """A JWT as the SDK builds it, with ``claims`` changed."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": key.name, "iss": "cdp", "nbf": now, "exp": now + 120}
    body.update(claims)
    private: Any
    if key.algorithm == "ES256":
        private = serialization.load_pem_private_key(key.secret.encode(), None)
    else:
        private = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.secret)[:32])
    return jwt.encode(body, private, algorithm=key.algorithm,
                      headers={"kid": key.name, "nonce": secrets.token_hex()})


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
async def test_the_sdk_is_authenticated_with_either_key_kind(algorithm: str) -> None:
    async with CoinbaseServer(new_api_key(algorithm)) as srv:
        client = _client(srv)
        answer = (await asyncio.to_thread(client.get_accounts)).to_dict()
        assert {a["currency"] for a in answer["accounts"]} == {"USD"}
        assert srv.auth_failures == []
        assert srv.requests[-1].path == "/api/v3/brokerage/accounts"


async def test_jwts_that_coinbase_would_refuse_get_401(server: CoinbaseServer) -> None:
    key = server.key
    uri = f"GET {server.base_url}/api/v3/brokerage/accounts"
    assert (await _raw(server, _token(key, uri=uri))).status_code == 200
    cases = {
        "uri claim": _token(key, uri=f"GET {server.base_url}/api/v3/brokerage/orders"),
        "exp": _token(key, uri=uri, exp=int(time.time()) - 30),
        "more than 120 s": _token(key, uri=uri, exp=int(time.time()) + 600),
        "sub/iss": _token(key, uri=uri, iss="someone"),
        "nbf": _token(key, uri=uri, nbf=int(time.time()) + 60),
    }
    for what, token in cases.items():
        response = await _raw(server, token)
        assert response.status_code == 401, what
        assert response.json()["error"] == "UNAUTHENTICATED"
    other = new_api_key("EdDSA")
    forged = _token(ApiKey(key.name, other.secret, other.public_pem, "EdDSA"), uri=uri)
    assert (await _raw(server, forged)).status_code == 401  # right name, wrong private key
    assert "Signature verification failed" in server.auth_failures[-1]
    replay = _token(key, uri=uri)
    assert (await _raw(server, replay)).status_code == 200
    assert (await _raw(server, replay)).status_code == 401
    assert server.auth_failures[-1] == "nonce reused (a replayed JWT)"
    wrong_alg = _token(new_api_key("ES256"), uri=uri)
    assert (await _raw(server, wrong_alg)).status_code == 401


async def test_orders_fills_edit_and_cancel_in_coinbase_shapes(server: CoinbaseServer) -> None:
    client = _client(server)
    created = (await asyncio.to_thread(
        client.limit_order_gtc, "c-1", "BTC-USD", "BUY", "10", "99.5")).to_dict()
    oid = created["success_response"]["order_id"]
    refused = (await asyncio.to_thread(
        client.limit_order_gtc, "c-2", "BTC-USD", "BUY", "1", "99.555")).to_dict()
    assert refused["success"] is False
    assert refused["error_response"]["preview_failure_reason"] == (
        "PREVIEW_INVALID_LIMIT_PRICE_PRECISION")
    await server.trade("BTC-USD", Decimal(99), Decimal(4))
    order = (await asyncio.to_thread(client.get_order, oid)).to_dict()["order"]
    assert (order["status"], order["filled_size"], order["client_order_id"]) == (
        "OPEN", "4", "c-1")
    fills = (await asyncio.to_thread(client.get_fills, order_ids=[oid])).to_dict()["fills"]
    assert [(f["size"], f["price"], f["trade_type"]) for f in fills] == [("4", "99", "FILL")]
    edit = (await asyncio.to_thread(client.edit_order, oid, size="3", price="99.5")).to_dict()
    assert edit["errors"][0]["edit_failure_reason"] == "CANNOT_EDIT_TO_BELOW_FILLED_SIZE"
    edit = (await asyncio.to_thread(client.edit_order, oid, size="12", price="98")).to_dict()
    assert edit == {"success": True, "errors": []}
    by_client = (await asyncio.to_thread(client.list_orders,
                                         client_order_id="c-1")).to_dict()["orders"]
    assert [o["order_configuration"]["limit_limit_gtc"]["base_size"] for o in by_client] == [
        "12"]
    cancel = (await asyncio.to_thread(client.cancel_orders, [oid, "nope"])).to_dict()
    assert [(r["success"], r["failure_reason"]) for r in cancel["results"]] == [
        (True, "UNKNOWN_CANCEL_FAILURE_REASON"), (False, "UNKNOWN_CANCEL_ORDER")]
    balances = {a["currency"]: (a["available_balance"]["value"], a["hold"]["value"])
                for a in (await asyncio.to_thread(client.get_accounts)).to_dict()["accounts"]}
    assert balances["BTC"] == ("4", "0")
    assert Decimal(balances["USD"][0]) == Decimal(1_000_000) - 4 * 99 - Decimal("0.396")
    with pytest.raises(requests.HTTPError, match="404"):
        await asyncio.to_thread(client.get_order, "nope")


async def test_a_burst_over_the_rate_limit_gets_429_with_headers(server: CoinbaseServer
                                                                 ) -> None:
    server.rate_limit = 3
    session = requests.Session()
    session.trust_env = False
    codes = []
    for _ in range(5):
        token = jwt_generator.build_rest_jwt(
            f"GET {server.base_url}/api/v3/brokerage/accounts", server.key.name,
            server.key.secret)
        response = await asyncio.to_thread(
            session.get, f"https://{server.base_url}/api/v3/brokerage/accounts",
            verify=str(server.ca_file), headers={"Authorization": f"Bearer {token}"})
        codes.append(response.status_code)
        assert "x-ratelimit-remaining" in response.headers
    assert codes == [200, 200, 200, 429, 429]
    assert response.headers["Retry-After"] == "1"


async def _messages(ws: Any, count: int) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), 2)) for _ in range(count)]


async def test_user_channel_subscriptions_snapshot_updates_and_sequence(
        server: CoinbaseServer) -> None:
    client = _client(server)
    await asyncio.to_thread(client.limit_order_gtc, "c-1", "BTC-USD", "BUY", "10", "99")
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    async with connect(server.ws_url, ssl=ctx) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "user",
                                  "product_ids": ["BTC-USD"], "jwt": "not-a-jwt"}))
        assert json.loads(await ws.recv()) == {"type": "error",
                                               "message": "authentication failure"}
        token = jwt_generator.build_ws_jwt(server.key.name, server.key.secret)
        await ws.send(json.dumps({"type": "subscribe", "channel": "user",
                                  "product_ids": ["BTC-USD"], "jwt": token}))
        subs, snap = await _messages(ws, 2)
        assert subs["channel"] == "subscriptions"
        assert snap["channel"] == "user" and snap["events"][0]["type"] == "snapshot"
        assert [o["client_order_id"] for o in snap["events"][0]["orders"]] == ["c-1"]
        server.ws_duplicate_next()
        await server.trade("BTC-USD", Decimal(99), Decimal(3))
        one, two = await _messages(ws, 2)
        parsed = WebsocketResponse(json.loads(json.dumps(one)))  # the SDK's own decoder
        (user_order,) = parsed.events[0].orders
        assert (parsed.channel, parsed.sequence_num, parsed.events[0].type) == (
            "user", one["sequence_num"], "update")
        assert (user_order.client_order_id, user_order.cumulative_quantity,
                user_order.leaves_quantity, user_order.status) == ("c-1", "3", "7", "OPEN")
        assert one["events"] == two["events"]
        assert one["events"][0]["orders"][0]["cumulative_quantity"] == "3"
        assert two["sequence_num"] == one["sequence_num"] + 1 == snap["sequence_num"] + 2
        server.ws_gap_next()
        await server.trade("BTC-USD", Decimal(99), Decimal(1))
        await server.trade("BTC-USD", Decimal(99), Decimal(1))
        after_gap = (await _messages(ws, 1))[0]
        assert after_gap["sequence_num"] == two["sequence_num"] + 2  # one number skipped
        assert after_gap["events"][0]["orders"][0]["cumulative_quantity"] == "5"
        # no heartbeats subscribed: the channel is closed when idle (Coinbase: 60-90 s)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)


async def test_heartbeats_keep_the_channel_open(server: CoinbaseServer) -> None:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    async with connect(server.ws_url, ssl=ctx) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "heartbeats",
                                  "product_ids": []}))
        messages = []
        deadline = asyncio.get_running_loop().time() + 0.9  # over twice idle_timeout
        while asyncio.get_running_loop().time() < deadline:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 1)))
        beats = [m for m in messages if m["channel"] == "heartbeats"]
        first = WebsocketResponse(json.loads(json.dumps(beats[0])))  # the SDK pops as it reads
        assert first.events[0].heartbeat_counter == "1"
        counters = [int(m["events"][0]["heartbeat_counter"]) for m in beats]
        assert len(beats) >= 8 and counters == list(range(1, len(beats) + 1))
