"""``/$batch``: at most 20 requests, relative URLs only (an absolute one fails that step with 400), each
step dispatched to the Graph route it names (and so throttled and permission-checked on its own),
answers in any order."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from simulators.graph.wire import PREFIX, GraphRoute, error
from simulators.http import Request, Response, Route, Router

MAX_BATCH = 20
STEP = "batch step"  # counted once per step; the envelope counts as "batch"


class Batch:
    def __init__(self, router: Router, shuffle: random.Random) -> None:
        self.router = router
        self._random = shuffle

    def routes(self) -> list[GraphRoute]:
        return [GraphRoute("POST", r"/\$batch", "batch", self.answer, locked=False)]

    def answer(self, request: Request) -> Response:
        try:
            steps = request.json().get("requests")
        except (ValueError, AttributeError):
            steps = None
        if not isinstance(steps, list) or not steps:
            return error(400, "BadRequest", "Invalid batch payload: 'requests' must be a non-empty array.")
        if len(steps) > MAX_BATCH:
            return error(400, "BadRequest", f"Batch request cannot contain more than {MAX_BATCH} requests.")
        ids = [str(s.get("id")) for s in steps]
        if len(set(ids)) != len(ids):
            return error(400, "BadRequest", "Batch request ids must be unique.")
        answers = [self._step(step, request) for step in steps]
        self._random.shuffle(answers)  # Graph answers in any order: clients must match by id
        return Response(200, {"responses": answers})

    def _step(self, step: dict[str, Any], envelope: Request) -> dict[str, Any]:
        self.router.count(STEP)
        step_id, url = str(step.get("id")), str(step.get("url") or "")
        if not url.startswith("/"):
            body = {"error": {"code": "BadRequest", "message": "Invalid request URL: it must be relative."}}
            return {"id": step_id, "status": 400, "headers": {}, "body": body}
        parts = urlsplit(url)
        inner = Request(
            method=str(step.get("method") or "GET").upper(),
            path=PREFIX + unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={**envelope.headers, **{k.lower(): v for k, v in (step.get("headers") or {}).items()}},
            body=json.dumps(step["body"]).encode() if "body" in step else b"",
            raw_path=PREFIX + url,
        )
        answer = self._dispatch(inner)
        headers = dict(answer.headers)
        if isinstance(answer.body, dict | list):
            headers.setdefault("Content-Type", "application/json")
        return {"id": step_id, "status": answer.status, "headers": headers, "body": answer.body}

    def _dispatch(self, request: Request) -> Response:
        for route in self._step_routes():
            found = route.pattern.match(request.path)
            if found and route.method == request.method:
                request.params = {k: v for k, v in found.groupdict().items() if v is not None}
                return route.handler(request)
        return error(404, "BadRequest", f"Resource not found for the segment in {request.path!r}.")

    def _step_routes(self) -> list[Route]:
        return [r for r in self.router.routes if not r.name.startswith(("admin", "batch"))]
