"""Request bodies of the OpenAI-compatible API, and OpenAI's error format.

Unknown fields are rejected with the field named (OpenAI answers "Unrecognized request argument");
fields we accept but do not act on are declared and documented as such. No field is ever used as
a filesystem path: `model` is looked up among the names this server serves.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class APIError(Exception):
    """An error answered in OpenAI's format: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    """Only one choice per request."""
    user: str | None = None
    """Accepted for compatibility; not used."""
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    """Accepted for compatibility; not applied."""
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    """Accepted for compatibility; not applied."""

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop: at most 4 non-empty strings")
        return stops

    @property
    def stops(self) -> list[str]:
        return list(self.stop or [])


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("one prompt per request (send a list of exactly one string, or a string)")
            return v[0]
        return v


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageURL(_Body):
    url: str
    """A data URL (data:image/png;base64,...); image models only."""
    detail: str | None = None


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageURL


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart | ImagePart]
    name: str | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content if p.type == "text")

    @property
    def images(self) -> list[str]:
        return [] if isinstance(self.content, str) else [p.image_url.url for p in self.content if p.type == "image_url"]


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ClassifyBody(_Body):
    model: str | None = None
    input: str | list[str] = []
    image: str | list[str] = []
    """Image classifiers: data URLs (data:image/png;base64,...) instead of `input`."""

    @property
    def images(self) -> list[str]:
        return [self.image] if isinstance(self.image, str) else list(self.image)

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class FeedbackBody(_Body):
    id: str = Field(min_length=1, max_length=200)
    """The `id` of a response this server gave."""
    label: str | None = None
    """The true label (classifiers): correctness is the served label == this."""
    correct: bool | None = None
    """Or a plain verdict on the answer (any model)."""
