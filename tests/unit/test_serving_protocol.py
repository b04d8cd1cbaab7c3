"""ops.serving.protocol: uvicorn's httptools protocol sending an answer in one write puts the
same bytes on the wire as uvicorn's own, and closes the same connections, for every kind of
answer (the common one, HEAD, chunked, streamed, wrong lengths, bad headers, pipelining)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
import uvicorn
from uvicorn.server import ServerState

from ops.serving.protocol import HttpToolsOneWrite

BODY = b'{"model_name":"churn","outputs":[1]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY)),
           (b"x-variant", b"v1"), (b"x-prediction-id", b"v1.3.0123~k~mac")]


class Transport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name,
                                                                                       default)

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def answer(*messages):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        for message in messages:
            await send(message)
    return app


def start(headers=HEADERS, status=200):
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def body(data=BODY, more=False):
    return {"type": "http.response.body", "body": data, "more_body": more}


def failing_app(scope, receive, send):
    async def run():
        await receive()
        await send(start())
        await send(body())
        raise RuntimeError("after the answer")
    return run()


REQUEST = (b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
           b"\r\nContent-Length: 2\r\n\r\n{}")

CASES = {
    "one answer": (answer(start(), body()), REQUEST),
    "default status line only": (answer(start(status=404), body()), REQUEST),
    "HTTP/1.0: connection closed": (answer(start(), body()),
                                    REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0")),
    "client asks to close": (answer(start(), body()),
                             REQUEST.replace(b"Host: x", b"Host: x\r\nConnection: close")),
    "HEAD": (answer(start(), body()), b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"),
    "no content-length: chunked": (answer(start(HEADERS[:1]), body()), REQUEST),
    "streamed body": (answer(start(), body(BODY[:5], more=True), body(BODY[5:])), REQUEST),
    "body shorter than content-length": (answer(start(), body(BODY[:5])), REQUEST),
    "body longer than content-length": (answer(start(), body(BODY + b"x")), REQUEST),
    "empty body": (answer(start([(b"content-length", b"0")]), body(b"")), REQUEST),
    "app says connection: close": (answer(start([*HEADERS, (b"connection", b"close")]),
                                          body()), REQUEST),
    "upper-case header names": (answer(start([(b"Content-Length", b"%d" % len(BODY)),
                                              (b"X-Variant", b"v1")]), body()), REQUEST),
    "bad header value": (answer(start([*HEADERS, (b"x-variant", b"a\nb")]), body()), REQUEST),
    "bad header name": (answer(start([*HEADERS, (b"x variant", b"a")]), body()), REQUEST),
    "bad content-length": (answer(start([(b"content-length", b"ten")]), body()), REQUEST),
    "transfer-encoding chunked": (answer(start([(b"transfer-encoding", b"chunked")]), body()),
                                  REQUEST),
    "no answer at all": (answer(), REQUEST),
    "error after the answer": (failing_app, REQUEST),
    "pipelined requests": (answer(start(), body()), REQUEST + REQUEST),
    "100-continue": (answer(start(), body()),
                     REQUEST.replace(b"Host: x", b"Host: x\r\nExpect: 100-continue")),
}


async def exchange(protocol_class, app, data: bytes):
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", access_log=False,
                            log_level="critical", server_header=False, date_header=False,
                            proxy_headers=False)
    config.load()
    transport = Transport()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(),
                                          app_state={})
    protocol.connection_made(transport)
    protocol.data_received(data)
    for _ in range(20):  # let the request tasks (and a pipelined one) run to the end
        await asyncio.sleep(0)
    return transport


def run(coroutine):
    # In its own thread: the browser tests keep Playwright's event loop running in the main
    # thread for the whole session, and asyncio.run refuses to nest in it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_bytes_as_uvicorns_own_protocol(case):
    app, data = CASES[case]
    theirs = run(exchange("httptools", app, data))
    ours = run(exchange(HttpToolsOneWrite, app, data))
    assert b"".join(ours.writes) == b"".join(theirs.writes)
    assert ours.closed == theirs.closed


def test_a_whole_answer_is_one_write():
    app, data = CASES["one answer"]
    theirs = run(exchange("httptools", app, data))
    ours = run(exchange(HttpToolsOneWrite, app, data))
    assert len(theirs.writes) == 2
    assert len(ours.writes) == 1
    assert ours.writes[0].startswith(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
    assert ours.writes[0].endswith(b"\r\n\r\n" + BODY)
