"""llama.cpp backend through the xllamacpp binding (see the README for why this binding).

xllamacpp runs llama.cpp's own server core in-process: continuous batching across
``n_parallel`` slots, the chat template from the GGUF's metadata, and OpenAI-shaped
requests and responses. We call its handlers directly and never use its HTTP side.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from ai_orchestrator.backends import import_library
from ai_orchestrator.backends.base import Backend, ChunkSink, Embeddings, Generation, ModelHandle
from ai_orchestrator.catalogue import CatalogueEntry, Task
from ai_orchestrator.errors import InferenceFailed, InvalidInput, ModelLoadFailed

DEFAULT_OPTIONS: dict[str, int] = {
    "n_ctx": 4096,
    "n_parallel": 4,
    # llama.cpp keeps old prompts' KV state in RAM for reuse; unbounded, it grows by
    # gigabytes under varied traffic.
    "cache_ram_mib": 64,
}


def _trim_heap() -> None:
    """Give freed heap pages back to the system, so unloading lowers resident memory."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


# "request (5031 tokens) exceeds the available context size (1024 tokens), try ..."
_CONTEXT_OVERFLOW = re.compile(
    r"\((\d+) tokens\) exceeds the available context size \((\d+) tokens\)"
)

# "input (601 tokens) is too large to process. increase the physical batch size (...: 512)"
_BATCH_OVERFLOW = re.compile(r"\((\d+) tokens\) is too large to process.*?(\d+)\)")


def _raise_for_error(response: Any) -> dict[str, Any]:
    if not isinstance(response, dict):
        raise InferenceFailed(f"llama.cpp returned {type(response).__name__}, not a response")
    error = response.get("error")
    if error is None:
        return response
    message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    # llama.cpp advises raising a setting that the client lacks.
    if overflow := _CONTEXT_OVERFLOW.search(message):
        tokens, context = overflow.groups()
        raise InvalidInput(
            f"the input is {tokens} tokens; this model takes at most {context} per request: "
            "send a shorter prompt or fewer messages"
        )
    code = error.get("code") if isinstance(error, dict) else None
    if code == 400 or (isinstance(error, dict) and error.get("type") == "invalid_request_error"):
        raise InvalidInput(message)
    # llama.cpp reports an embedding input longer than its batch as a server error,
    # though it is the request's size that is wrong, and advises a setting too.
    if too_long := _BATCH_OVERFLOW.search(message):
        tokens, batch = too_long.groups()
        raise InvalidInput(
            f"the input is {tokens} tokens; this model embeds at most {batch} per text: "
            "send shorter texts"
        )
    if "too large to process" in message:
        raise InvalidInput(message)
    raise InferenceFailed(f"llama.cpp failed: {message}")


def _call(handler: Any, *args: Any) -> Any:
    try:
        return handler(*args)
    # The binding checks the request before generating anything and reports what it
    # refuses (a wrong shape, an image part, malformed tool calls) as ValueError or
    # RuntimeError; failures while generating come back as an "error" object instead.
    except (ValueError, RuntimeError) as exc:
        raise InvalidInput(str(exc)) from exc


class LlamaHandle(ModelHandle):
    def __init__(self, server: Any, workdir: Path) -> None:
        self._server = server
        self._workdir = workdir

    def chat(self, request: dict[str, Any]) -> Generation:
        response = _call(self._server.handle_chat_completions, request)
        return Generation(_raise_for_error(response))

    def complete(self, request: dict[str, Any]) -> Generation:
        return Generation(_raise_for_error(_call(self._server.handle_completions, request)))

    def stream(self, kind: str, request: dict[str, Any], sink: ChunkSink) -> None:
        handler = (
            self._server.handle_chat_completions
            if kind == "chat"
            else self._server.handle_completions
        )
        failure: list[dict[str, Any]] = []

        def on_chunk(chunk: Any) -> bool:
            if isinstance(chunk, dict) and "error" in chunk:
                failure.append(chunk)
                return True
            # Returning True tells llama.cpp to stop this request's generation.
            return sink(chunk)

        _call(handler, {**request, "stream": True}, on_chunk)
        if failure:
            _raise_for_error(failure[0])

    def generate(self, kind: str, request: dict[str, Any], stop: threading.Event) -> Generation:
        # Streamed underneath, because only a stream can be told to stop: llama.cpp's
        # one-shot handlers run to max_tokens even after the client has gone.
        chunks: list[dict[str, Any]] = []

        def sink(chunk: dict[str, Any]) -> bool:
            chunks.append(chunk)
            return stop.is_set()

        streamed = {**request, "stream_options": {"include_usage": True}}
        self.stream(kind, streamed, sink)
        return Generation(assemble(kind, chunks))

    def embed(self, texts: list[str]) -> Embeddings:
        response = _raise_for_error(_call(self._server.handle_embeddings, {"input": texts}))
        ordered = sorted(response["data"], key=lambda item: item["index"])
        usage = response.get("usage") or {}
        return Embeddings(
            vectors=[item["embedding"] for item in ordered],
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
        )

    def unload(self) -> None:
        self._server = None
        shutil.rmtree(self._workdir, ignore_errors=True)
        _trim_heap()


def assemble(kind: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The one-shot response that the streamed chunks of one choice add up to."""
    text, finish, usage = [], None, None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            part = choice.get("delta", {}).get("content") if kind == "chat" else choice.get("text")
            text.append(part or "")
            finish = choice.get("finish_reason") or finish
    first = chunks[0] if chunks else {}
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": "".join(text)}}
    else:
        choice = {"index": 0, "text": "".join(text), "logprobs": None}
    return {
        "id": first.get("id", ""),
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": first.get("created", 0),
        "model": first.get("model", ""),
        "choices": [{**choice, "finish_reason": finish}],
        "usage": usage,
    }


class LlamaBackend(Backend):
    name = "llama_cpp"

    def load(self, entry: CatalogueEntry, path: Path) -> ModelHandle:
        xlc: Any = import_library("xllamacpp", self.name, "xllamacpp")
        options = {**DEFAULT_OPTIONS, **entry.options}
        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = int(options["n_ctx"])
        params.n_parallel = int(options["n_parallel"])
        params.cache_ram_mib = int(options["cache_ram_mib"])
        params.cpuparams.n_threads = self.settings.llm_threads
        params.cpuparams_batch.n_threads = self.settings.llm_threads
        # Errors only: llama.cpp writes straight to stderr, outside our log format.
        params.verbosity = 1
        params.endpoint_metrics = True  # for _wait_serving; the binding's socket is private
        if entry.task is Task.EMBEDDINGS:
            params.embedding = True
            params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        # The binding always opens a listener of its own. Pointed at a Unix socket in a
        # private directory, it takes no TCP port and only this process's user can reach
        # it; the service stays the only thing listening on the network.
        workdir = Path(tempfile.mkdtemp(prefix=f"aio-{entry.id}-"))
        params.hostnames = [str(workdir / "llama.sock")]
        # Even that socket answers nobody without this random key, runs one HTTP thread
        # instead of five, and does not show prompts on its /slots page.
        params.api_keys = [secrets.token_hex(24)]
        params.n_threads_http = 1
        params.endpoint_slots = False
        try:
            server = xlc.Server(params)
        except Exception as exc:  # the binding raises plain RuntimeErrors
            shutil.rmtree(workdir, ignore_errors=True)
            message = str(exc).replace(str(path), str(entry.path))
            raise ModelLoadFailed(
                f"model {entry.id!r}: llama.cpp refused the file: {message}"
            ) from exc
        _wait_serving(server)
        return LlamaHandle(server, workdir)


def _wait_serving(server: Any) -> None:
    """Return once the server's task loop runs, by asking it for its metrics (a task
    that goes through that loop and costs nothing).

    Works around a hang: llama.cpp's task loop sets itself running when it starts, so a
    stop that comes before that is lost, and destroying the server then waits for ever.
    50 back-to-back load/unload cycles hung in about one run of three on a busy machine.
    """
    response = server.handle_metrics()
    if isinstance(response, str) and '"error"' in response:
        raise ModelLoadFailed(f"llama.cpp's server did not start: {response[:200]}")
