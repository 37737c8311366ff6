"""Tick sources beyond the plain websocket feed: vendor websocket protocols (Alpaca, Finnhub,
Coinbase), the daily-series pollers (FRED, Stooq), and the session calendar of 24/7 markets.

Parsing is pure (``alpaca``, ``finnhub``, ``coinbase``, ``csvseries``, ``calendar``); the I/O lives
in :mod:`ratiowatch.streams.feed` (websocket) and :mod:`.poller` / :mod:`.fetch` (HTTP).
"""
