"""DNS rebinding, as the tests of outgoing requests stage it: a host name that resolves to a
public address once (when the portal checks it) and to loopback afterwards (when a careless
client would connect), on the test's own ``port``."""

import socket

HOST = "rebind.attacker.example"


def rebind_to_loopback(monkeypatch, port: int, host: str = HOST) -> None:
    """``host`` answers 93.184.215.14 once, then 127.0.0.1, both on ``port``."""
    real, answers = socket.getaddrinfo, iter(["93.184.215.14"])

    def rebinding(name, *args, **kwargs):
        if name == host:
            address = next(answers, "127.0.0.1")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
