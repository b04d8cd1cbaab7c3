"""A small OpenID Connect provider for the single sign-on tests: a real HTTP server with
the four endpoints the authorization code flow uses (authorize, token, userinfo, jwks),
RS256 id tokens, and switches to misbehave (another audience, an unknown key, an
unverified email, an error at the token endpoint)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class Provider:
    def __init__(self, client_id: str, client_secret: str):
        self.client_id, self.client_secret = client_id, client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.claims = {"sub": "u-1", "email": "dana@example.com", "email_verified": True,
                       "preferred_username": "dana", "given_name": "Dana",
                       "family_name": "Scully"}
        self.audience = client_id  # what the id token says it is for
        self.sign_with_rogue_key = False
        self.token_status = 200
        self._codes: dict[str, dict] = {}
        self._access: dict[str, dict] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> Provider:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def settings(self) -> dict:
        return {"OIDC_RP_CLIENT_ID": self.client_id, "OIDC_RP_CLIENT_SECRET": self.client_secret,
                "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.url}/authorize",
                "OIDC_OP_TOKEN_ENDPOINT": f"{self.url}/token",
                "OIDC_OP_USER_ENDPOINT": f"{self.url}/userinfo",
                "OIDC_OP_JWKS_ENDPOINT": f"{self.url}/jwks",
                "MODELGATE_OIDC_ISSUER": self.url, "MODELGATE_OIDC_NAME": "Example SSO"}

    def _id_token(self, nonce: str, claims: dict) -> str:
        now = int(time.time())
        payload = {**claims, "iss": self.url, "aud": self.audience, "iat": now,
                   "exp": now + 300, "nonce": nonce}
        key = self.rogue_key if self.sign_with_rogue_key else self.key
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/authorize":
                    if query.get("client_id") != provider.client_id:
                        return self._json(400, {"error": "unauthorized_client"})
                    code = secrets.token_urlsafe(16)
                    provider._codes[code] = {"nonce": query.get("nonce", ""),
                                             "redirect_uri": query["redirect_uri"],
                                             "claims": dict(provider.claims)}
                    self.send_response(302)
                    self.send_header("Location", query["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": query.get("state", "")}))
                    self.end_headers()
                elif url.path == "/jwks":
                    jwk = json.loads(RSAAlgorithm.to_jwk(provider.key.public_key()))
                    self._json(200, {"keys": [{**jwk, "kid": "k1", "alg": "RS256",
                                               "use": "sig"}]})
                elif url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    grant = provider._access.get(token)
                    if grant is None:
                        return self._json(401, {"error": "invalid_token"})
                    self._json(200, grant)
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlparse(self.path).path != "/token":
                    return self._json(404, {"error": "not_found"})
                if provider.token_status != 200:
                    return self._json(provider.token_status, {"error": "server_error"})
                if (form.get("client_id"), form.get("client_secret")) != (
                        provider.client_id, provider.client_secret):
                    return self._json(401, {"error": "invalid_client"})
                grant = provider._codes.pop(form.get("code", ""), None)
                if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                    return self._json(400, {"error": "invalid_grant"})
                access = secrets.token_urlsafe(16)
                provider._access[access] = grant["claims"]
                self._json(200, {"access_token": access, "token_type": "Bearer",
                                 "expires_in": 300,
                                 "id_token": provider._id_token(grant["nonce"],
                                                                grant["claims"])})

        return Handler
