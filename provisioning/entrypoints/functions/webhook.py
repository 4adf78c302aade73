"""Graph's webhook: validation handshake, then validate, enqueue, answer 202 — well within 3 seconds.

No Graph, Druva or state call happens here (Graph marks slow endpoints and then drops notifications).
Anonymous at the Functions layer: Graph cannot send a function key it does not know; every
notification proves itself with the secret clientState instead, compared in constant time.
"""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from provisioning.entrypoints.functions import runtime
from provisioning.service.notifications import triage

log = logging.getLogger("provisioning.webhook")
bp = func.Blueprint()

MAX_VALIDATION_TOKEN = 8192
# Graph allows 3 s for an answer. The enqueue gets at most 2 s in total (connection, SDK retries and
# all); past that the webhook answers 503 and Graph delivers again later, instead of timing out.
ENQUEUE_SECONDS = 2.0
NOSNIFF = {"X-Content-Type-Options": "nosniff"}  # the echoed token is text, never to be sniffed as HTML


def validation_answer(token: str) -> func.HttpResponse:
    """Echo the (already URL-decoded) token as text/plain, as Graph's handshake requires."""
    if not token or len(token) > MAX_VALIDATION_TOKEN or not _encodable(token):
        return func.HttpResponse(
            "bad validation token", status_code=400, mimetype="text/plain", headers=NOSNIFF
        )
    return func.HttpResponse(token, status_code=200, mimetype="text/plain", headers=NOSNIFF)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be echoed as UTF-8
        return False
    return True


async def receive(req: func.HttpRequest) -> func.HttpResponse:
    token = req.params.get("validationToken")
    if token is not None:
        return validation_answer(token)
    settings = runtime.settings()
    result = triage(
        req.get_body(), settings.client_states, settings.azure_tenant_id, None, runtime.clock().now()
    )
    if result.rejected:
        log.warning("notifications refused: %s", result.summary())  # one line per POST, however large
    if not result.accepted:
        return func.HttpResponse(status_code=400)
    try:
        async with asyncio.timeout(ENQUEUE_SECONDS):
            await runtime.queue().send(result.messages)
    except TimeoutError:
        log.error("enqueue took longer than %gs; answering 503 so Graph delivers again", ENQUEUE_SECONDS)
        return func.HttpResponse(status_code=503)
    except Exception as error:
        log.error("could not enqueue (%s); answering 503 so Graph delivers again", type(error).__name__)
        return func.HttpResponse(status_code=503)  # not persisted: make Graph retry
    return func.HttpResponse(status_code=202)


@bp.function_name("graph_notifications")
@bp.route(route="graph/notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    with runtime.reported(log, "graph_notifications"):
        return await receive(req)


@bp.function_name("graph_lifecycle")
@bp.route(route="graph/lifecycle", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    with runtime.reported(log, "graph_lifecycle"):
        return await receive(req)
