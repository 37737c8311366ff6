"""A feed's subscribe template, rendered for its symbols: the text frames a plain or polygon feed
sends after connecting (``--feed-subscribe``). Pure: the client (:mod:`.feed`) sends them."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["SubscribeTemplate", "render_subscribe"]

SubscribeTemplate = dict | str | list | None


def _fill(value: Any, symbols: list[str]) -> Any:
    # A value that is exactly "{symbols}" becomes the list, inside a longer string the comma-joined
    # text. Symbols are sent as configured: a vendor that wants "T.IWM" is configured with "T.IWM".
    if isinstance(value, str):
        return list(symbols) if value == "{symbols}" else value.replace("{symbols}", ",".join(symbols))
    if isinstance(value, dict):
        return {k: _fill(v, symbols) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, symbols) for v in value]
    return value


def render_subscribe(template: SubscribeTemplate, symbols: list[str]) -> list[str]:
    """The text frames to send after connecting. A dict is one JSON message; a str is sent as is
    (``{symbols}`` -> comma-joined); a list is several messages in order (e.g. auth, then
    subscribe); None sends nothing (feeds that stream on connect)."""
    if template is None:
        return []
    if isinstance(template, list):
        return [m for t in template for m in render_subscribe(t, symbols)]
    if isinstance(template, str):
        return [template.replace("{symbols}", ",".join(symbols))]
    if isinstance(template, dict):
        return [orjson.dumps(_fill(template, symbols)).decode()]
    raise TypeError(f"subscribe must be a dict, a str, a list of them or None, got {type(template).__name__}")
