"""uvicorn's httptools protocol, sending each small answer in one write.

uvicorn writes an answer's status line and headers when the app sends
``http.response.start`` and its body in a second write at ``http.response.body``: two
``write`` system calls and, with TCP_NODELAY, two TCP segments per answer (about a tenth of
the server's CPU time at ~17k requests/s), after a regular-expression search per header name
and per header value. uvicorn has no setting to send them together, so this cycle does what
uvicorn's ``send`` does for the common answer, in one write: the head is formatted at
``http.response.start`` exactly as uvicorn formats it (names lower-cased, the same checks,
``connection: close`` when the connection is not kept alive) and held; the body that
completes it (``Content-Length`` bytes, ``more_body`` false) leaves with it. The bytes on the
wire are the same, in the same order.

Anything else goes through uvicorn's own ``send`` unchanged: an answer without
``Content-Length``, chunked, with a ``connection`` header, to a HEAD request, or that fails a
header check (uvicorn raises its own error), a body in several messages or of the wrong
length (the held head is written first), a paused or lost connection, an access log. The
one difference: an app that starts an answer and returns without its body has its connection
closed without the head (uvicorn wrote the head, then closed); ``ModelServer`` always sends
both messages back to back.
"""

from __future__ import annotations

import types

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)


def _matched_bytes(pattern) -> bytes | None:
    """The bytes a one-character-class pattern matches; None for any other pattern."""
    source = pattern.pattern
    if not (source.startswith(b"[") and source.endswith(b"]") and b"]" not in
            source[1:-1].replace(b"\\\\", b"").replace(b"\\]", b"")):
        return None
    return bytes(b for b in range(256) if pattern.fullmatch(bytes([b])))


# What uvicorn's HEADER_RE and HEADER_VALUE_RE look for in header names and values.
_NAME_BYTES = _matched_bytes(HEADER_RE)
_VALUE_BYTES = _matched_bytes(HEADER_VALUE_RE)
_HOLDS = _NAME_BYTES is not None and _VALUE_BYTES is not None  # else: uvicorn's path always


class _OneWriteCycle(RequestResponseCycle):
    _head: bytes | None = None  # a started answer's head, waiting for its body

    async def send(self, message) -> None:
        head = self._head
        if head is None:
            if message["type"] == "http.response.start" and not self.response_started \
                    and self._hold(message):
                return
            await super().send(message)
            return
        self._head = None
        if message["type"] == "http.response.body" and not message.get("more_body", False) \
                and not self.disconnected and not self.flow.write_paused:
            body = message.get("body", b"")
            if len(body) == self.expected_content_length:  # uvicorn's body branch, one write
                self.expected_content_length = 0
                self.transport.write(head + body)
                self.response_complete = True
                self.message_event.set()
                if not self.keep_alive:
                    self.transport.close()
                self.on_response()
                return
        if not self.disconnected:
            self.transport.write(head)
        await super().send(message)

    def _hold(self, message) -> bool:
        """uvicorn's handling of ``http.response.start`` for the common answer, the head kept
        instead of written; ``False`` (nothing changed) for uvicorn's own path."""
        if not _HOLDS or self.disconnected or self.flow.write_paused or self.access_log \
                or self.scope["method"] == "HEAD":
            return False
        try:
            line = STATUS_LINE[message["status"]]
            headers = message.get("headers", [])
            if type(headers) is not list:
                return False
            if self.default_headers:
                headers = self.default_headers + headers
            content = [line]
            length = None
            for name, value in headers:
                name = name.lower()
                if name == b"content-length":
                    if length is None:
                        length = int(value.decode())
                elif name == b"transfer-encoding" or name == b"connection":
                    return False
                content += (name, b": ", value, b"\r\n")
            # uvicorn's checks of each name and each value: its patterns are one character
            # class each, so they find something in a name (value) exactly when one of the
            # bytes they match is in it, in any of them (lower-casing changes none of those).
            # On a find, uvicorn's path raises its own error.
            names, values = b"".join(content[1::4]), b"".join(content[3::4])
            if len(names.translate(None, _NAME_BYTES)) != len(names) or \
                    len(values.translate(None, _VALUE_BYTES)) != len(values):
                return False
        except Exception:  # noqa: BLE001 - uvicorn's path raises what it raises
            return False
        if length is None:  # uvicorn would send it chunked
            return False
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        self.response_started = True
        self.waiting_for_100_continue = False
        self.chunked_encoding = False
        self.expected_content_length = length
        self._head = b"".join(content)
        return True


class HttpToolsOneWrite(HttpToolsProtocol):
    """``uvicorn.Config(http=...)``: uvicorn's httptools protocol whose request cycles send
    a small answer in one write."""

    # uvicorn's own on_headers_complete, run with its module's globals except that the
    # cycle it makes is ours (a cycle whose class changed after creation would lose
    # CPython's attribute-access specialisation on every later access).
    on_headers_complete = types.FunctionType(
        HttpToolsProtocol.on_headers_complete.__code__,
        {**vars(httptools_impl), "RequestResponseCycle": _OneWriteCycle},
        "on_headers_complete")
