"""The HTTP side of the request rules (`requests.py`): the key, the body read within its limit, errors as JSON.

Shared by the CPU server and the gateway in front of llama.cpp, so every engine Stratos deploys refuses the same
requests with the same replies.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stratos_deployer.serving.requests import RequestRefused, check_key, error_body


def unauthorised(request: Request, api_key: str | None) -> Response | None:
    """The 401 for a request without the endpoint's key; None when it may pass."""
    try:
        check_key(request.headers.get("authorization"), api_key)
    except RequestRefused as refused:
        return error_reply(refused.status, str(refused))
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes (a chunked upload says no length up front)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestRefused(413, f"request body larger than {limit} bytes")
    return bytes(body)


def error_reply(status: int, message: str) -> JSONResponse:
    """An OpenAI-style error reply."""
    return JSONResponse(error_body(status, message), status_code=status)
