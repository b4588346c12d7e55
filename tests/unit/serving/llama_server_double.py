"""TEST DOUBLE of ``llama-server``: an OpenAI-shaped server that records what reaches it (never used outside tests).

``python llama_server_double.py --port N --record FILE`` answers ``/health``, ``/v1/models`` and
``/v1/chat/completions`` (streamed or not) with a fixed reply, and appends each request's headers and body to FILE
as a JSON line, so a test can see exactly what the gateway forwarded. It checks the bearer key in
``LLAMA_API_KEY`` as llama-server does.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

REPLY = "recorded"


def create_app(record: Path) -> Starlette:
    key = os.environ.get("LLAMA_API_KEY")

    def refused(request: Request) -> Response | None:
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": {"message": "Invalid API Key", "code": 401}}, status_code=401)
        return None

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        return refused(request) or JSONResponse({"object": "list", "data": [{"id": "recorded-model"}]})

    async def chat(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        body = await request.json()
        with record.open("a") as out:
            out.write(json.dumps({"authorization": request.headers.get("authorization"), "body": body}) + "\n")
        if body.get("stream"):
            chunks = [{"choices": [{"index": 0, "delta": {"content": word}}]} for word in (REPLY, "!")]
            lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
            return StreamingResponse(iter(lines), media_type="text/event-stream")
        message = {"role": "assistant", "content": REPLY}
        return JSONResponse({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    routes = [Route("/health", health), Route("/v1/models", models)]
    routes.append(Route("/v1/chat/completions", chat, methods=["POST"]))
    return Starlette(routes=routes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.record), host="127.0.0.1", port=args.port, log_level="warning")
