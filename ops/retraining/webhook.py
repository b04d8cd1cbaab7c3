"""A signed webhook: the project's own receiver, told to retrain.

The body and headers are the notifications' (``event`` ``retraining.requested``,
``X-Modelgate-Signature: sha256=<HMAC>``); the portal passes in the signing function, the
secret and the address check (``sign``, ``secret``, ``refuse``), so one rule decides which
addresses may receive webhooks, checked again on every attempt (DNS answers change). With
``public_only`` the address actually connected to is checked as well (a name whose answer
changes between the check and the connection, DNS rebinding, is refused). The
answer may carry ``{"run_id", "url"}`` for the trigger's link.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ops.addresses import public_only
from ops.retraining.base import Parameter, RunRequest, RunStarted, Target, TargetRefused, json_of

EVENT = "retraining.requested"


class WebhookTarget(Target):
    kind = "webhook"
    SETTINGS = ("secret", "sign", "refuse", "project", "public_only")
    PARAMETERS = (Parameter("url", "the http(s) address that receives the request"),)

    def __init__(self, settings: dict, session=None):
        super().__init__(settings, session)
        if not settings.get("secret") or not callable(settings.get("sign")):
            raise TargetRefused("webhook target: a secret and a signing function are needed",
                                code="bad_target")
        if settings.get("public_only"):
            public_only(self.session)

    def body(self, request: RunRequest, sent_at: datetime | None = None) -> bytes:
        sent_at = sent_at or datetime.now(UTC)
        return json.dumps({"event": EVENT, "sent_at": sent_at.isoformat(),
                           "delivery_id": request.run_name,
                           "project": self.settings.get("project", ""),
                           "data": {"trigger_id": request.trigger_id,
                                    "evidence": request.evidence}},
                          separators=(",", ":")).encode()

    def start(self, request: RunRequest) -> RunStarted:
        url = request.params["url"]
        if not url.startswith(("http://", "https://")):
            raise TargetRefused("webhook: url must be an http:// or https:// address")
        refuse = self.settings.get("refuse")
        refusal = refuse(url) if callable(refuse) else None
        if refusal:
            raise TargetRefused(f"webhook: refused: {refusal}", code="private_address")
        body = self.body(request)
        answer = self.post(url, body, headers={
            "X-Modelgate-Event": EVENT, "X-Modelgate-Delivery": request.run_name,
            "X-Modelgate-Signature": self.settings["sign"](self.settings["secret"], body)},
            where="webhook")
        found = json_of(answer)
        return RunStarted(str(found.get("run_id") or ""), str(found.get("url") or ""),
                          already=answer.status_code == 409)
