"""Command line: ``ai-orchestrator serve`` and ``ai-orchestrator models``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from types import FrameType
from typing import Any

from pydantic import ValidationError

from ai_orchestrator.catalogue import load_catalogue
from ai_orchestrator.errors import CatalogueError, ConfigurationError, OrchestratorError
from ai_orchestrator.settings import Settings

FACTORY = "ai_orchestrator.api.app:app_from_env"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ai-orchestrator", description="ALT_LAS AI Orchestrator: serve and inspect models."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (settings from AIO_* vars)")
    serve.add_argument("--host", help="overrides AIO_HOST")
    serve.add_argument("--port", type=int, help="overrides AIO_PORT")
    serve.add_argument("--reload", action="store_true", help="restart on source changes (dev)")
    serve.add_argument(
        "--reload-poll",
        action="store_true",
        help="with --reload, poll for changes where file events do not cross a bind mount",
    )
    models = commands.add_parser("models", help="list the catalogue and each model's state")
    models.add_argument("--url", help="service to ask (default: http://AIO_HOST:AIO_PORT)")
    models.add_argument(
        "--key",
        default=os.environ.get("AIO_API_KEY"),
        help="API key, where the service needs one (default: the AIO_API_KEY variable)",
    )
    args = parser.parse_args(argv)

    # Command-line values go through the environment so that a reloading child process,
    # which builds its own settings, sees them too.
    if getattr(args, "host", None):
        os.environ["AIO_HOST"] = args.host
    if getattr(args, "port", None):
        os.environ["AIO_PORT"] = str(args.port)
    try:
        settings = Settings()
        if args.command == "serve":
            return _serve(settings, reload=args.reload, poll=args.reload_poll)
        return _models(settings, args.url, args.key)
    except (CatalogueError, ConfigurationError, OrchestratorError, ValidationError) as exc:
        print(f"ai-orchestrator: {exc}", file=sys.stderr)
        return 2


def _serve(settings: Settings, *, reload: bool, poll: bool) -> int:
    import uvicorn

    from ai_orchestrator.api.app import create_app
    from ai_orchestrator.logs import configure_logging

    configure_logging(settings)
    # uvicorn drains on SIGTERM, then restores the previous handler and raises the signal
    # again so that the process dies "by" it (status -15). A stop asked for by the
    # orchestrator is a clean exit for us: this handler turns that re-raise into status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if reload:
        if poll:
            os.environ["WATCHFILES_FORCE_POLLING"] = "true"
        target: Any = FACTORY
    else:
        target = create_app(settings)
    uvicorn.run(
        target,
        factory=reload,
        reload=reload,
        reload_dirs=[os.path.dirname(__file__)] if reload else None,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    return 0


def _message(refused: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(refused)["error"]["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(refused.reason)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _models(settings: Settings, url: str | None, key: str | None) -> int:
    """Ask the running service; without one, list the local catalogue with unknown states."""
    base = url or f"http://{settings.host}:{settings.port}"
    request = urllib.request.Request(f"{base}/api/models")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            rows = [
                (m["id"], m["task"], m["backend"], m["status"]["state"])
                for m in json.load(response)["models"]
            ]
    except urllib.error.HTTPError as refused:
        # The service answers but refuses: say so, rather than that nothing answers.
        print(
            f"ai-orchestrator: {base} answered {refused.code}: {_message(refused)}", file=sys.stderr
        )
        return 1
    except (OSError, ValueError, KeyError, TypeError):
        print(f"(no service answering at {base}; states are unknown)", file=sys.stderr)
        catalogue = load_catalogue(settings.catalogue, settings.model_dir)
        rows = [(e.id, e.task.value, e.backend, "-") for e in catalogue]
    print(f"{'ID':32} {'TASK':16} {'BACKEND':12} STATE")
    for model_id, task, backend, state in rows:
        print(f"{model_id:32} {task:16} {backend:12} {state}")
    return 0
