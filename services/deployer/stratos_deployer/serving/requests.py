"""What a chat-completion request may ask of the CPU server, checked before anything reaches the batcher.

One request's values decide the sampling of the whole decoding batch it joins: a ``"temperature": "nan"`` once
crashed every request decoded with it (other clients got cut-off text marked ``stop``). So every number is finite
and in range, ``max_tokens`` is bounded by the operator, the body by size, and a key is checked when one is set.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from stratos_deployer.serving.process import ServingError

ENDPOINT_KEY_ENV = "STRATOS_ENDPOINT_KEY"
"""Where a Stratos server process reads its endpoint's key: the environment, never argv (``ps`` shows argv to all)."""
MAX_N = 16
"""Most samples one request may ask for (each is a row of the decoding batch)."""
MAX_STOP = 4
"""Most stop sequences (OpenAI's limit)."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings (OpenAI semantics: temperature 0 is greedy)."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class RequestRefused(ServingError, ValueError):
    """A request the server answers with an HTTP error instead of serving it (a ValueError too: it is bad input)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    """The fields the server reads (others an OpenAI client sends are ignored, as vLLM does)."""

    model_config = ConfigDict(extra="ignore")
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=1024)
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: FiniteFloat | None = Field(default=None, ge=0, le=2)
    top_p: FiniteFloat | None = Field(default=None, gt=0, le=1)
    stop: str | list[Annotated[str, Field(max_length=256)]] | None = Field(default=None, max_length=MAX_STOP)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt | None = Field(default=None, ge=1, le=MAX_N)

    def sampling(self, default_max_tokens: int, max_tokens_limit: int) -> SamplingParams:
        """The batcher's settings; a completion longer than the operator allows is refused, not cut."""
        max_tokens = self.max_completion_tokens or self.max_tokens or min(default_max_tokens, max_tokens_limit)
        if max_tokens > max_tokens_limit:
            raise RequestRefused(400, f"max_tokens must be at most {max_tokens_limit} on this server")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=stop,
        )

    @property
    def samples(self) -> int:
        n = self.n or 1
        if n > 1 and self.stream:
            raise RequestRefused(400, "streaming supports only n=1")
        return n


def parse_chat_request(body: Any) -> ChatRequest:
    """The request, or `RequestRefused` naming the first bad field in one line."""
    if not isinstance(body, dict):
        raise RequestRefused(400, "request body must be a JSON object")
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise RequestRefused(400, f"'{where}': {first['msg']}") from None


def error_body(status: int, message: str) -> dict[str, Any]:
    """An OpenAI-style error body: what every Stratos endpoint answers a refused request with."""
    kind = "server_error" if status >= 500 else "authentication_error" if status == 401 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def check_key(authorization: str | None, api_key: str | None) -> None:
    """With a key set, every request must carry it as a bearer token (compared in constant time)."""
    if api_key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise RequestRefused(401, "missing or wrong API key (send 'Authorization: Bearer <key>')")


def check_length(content_length: str | None, limit: int) -> None:
    """A body the client says is too large is refused before it is read."""
    if content_length is None:
        return
    if not content_length.isdigit():
        raise RequestRefused(400, "Content-Length must be a number")
    if int(content_length) > limit:
        raise RequestRefused(413, f"request body larger than {limit} bytes")
