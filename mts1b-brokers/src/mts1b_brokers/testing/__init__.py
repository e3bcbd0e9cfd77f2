"""Reusable test utilities of mts1b-brokers, shipped in the wheel for plugin authors.

- :mod:`mts1b_brokers.testing.tws`: :class:`~mts1b_brokers.testing.tws.FakeTws`, a local TCP
  server that stands in for TWS / IB Gateway and speaks the TWS API socket protocol (classic
  framing, server versions 176 and 178) as ``ib_async`` uses it, with scriptable faults;
  :class:`~mts1b_brokers.testing.tws.TwsFaultDriver` drives it for the conformance kit.
- ``coinbase_*``: the stand-in for Coinbase Advanced Trade (see those modules).

Nothing here talks to a real venue; every server is local and in-process.
"""
