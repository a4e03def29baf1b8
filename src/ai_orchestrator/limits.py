"""Size limits on generation requests, checked before a model is touched.

A request that asks no ``max_tokens`` gets the limit: llama.cpp's own default is to
generate until the context is full.
"""

from __future__ import annotations

import logging
from typing import Any

from ai_orchestrator.errors import InvalidInput
from ai_orchestrator.settings import Environment, Settings

log = logging.getLogger("ai_orchestrator.service")


def prepare_generation(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    """The request with ``max_tokens`` set; InvalidInput naming the limit it breaks."""
    prompt = request.get("prompt")
    if isinstance(prompt, str):
        _check_prompt(settings, len(prompt), "prompt")
    else:
        messages = request.get("messages") or []
        _check_prompt(settings, sum(_content_chars(m.get("content")) for m in messages), "messages")
    limit = settings.max_tokens_limit
    asked = request.get("max_tokens")
    if asked is not None and asked > limit:
        raise InvalidInput(
            f"max_tokens {asked} is over the limit of {limit} (AIO_MAX_TOKENS_LIMIT)",
            param="max_tokens",
        )
    if settings.env is Environment.DEVELOPMENT:
        # Prompts may hold personal data: they are logged nowhere else.
        log.debug("prompt %r", prompt if isinstance(prompt, str) else request.get("messages"))
    return {**request, "max_tokens": asked or limit}


def check_texts(settings: Settings, texts: list[str]) -> None:
    _check_prompt(settings, sum(len(text) for text in texts), "input")


def _check_prompt(settings: Settings, chars: int, param: str) -> None:
    if chars > settings.max_prompt_chars:
        raise InvalidInput(
            f"the prompt is {chars} characters; the limit is {settings.max_prompt_chars} "
            "(AIO_MAX_PROMPT_CHARS)",
            param=param,
        )


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    return 0
