"""The application factory: settings in, ASGI app out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route

from ai_orchestrator import __version__
from ai_orchestrator.api import health, metrics, models, oip, openai, orchestrated
from ai_orchestrator.api.direct import DirectRoutes
from ai_orchestrator.api.errors import install_error_handlers
from ai_orchestrator.api.middleware import RequestContext
from ai_orchestrator.api.security import Deadline, Guard
from ai_orchestrator.auth import KeyRing, load_keys
from ai_orchestrator.catalogue import load_catalogue
from ai_orchestrator.errors import OrchestratorError
from ai_orchestrator.logs import configure_logging
from ai_orchestrator.metrics import Metrics
from ai_orchestrator.ratelimit import RateLimiter
from ai_orchestrator.service import Orchestrator
from ai_orchestrator.settings import Settings

log = logging.getLogger("ai_orchestrator")


def create_app(settings: Settings) -> FastAPI:
    """Build the service. A malformed catalogue raises CatalogueError here, and a missing or
    malformed key file ConfigurationError, before serving."""
    keys = load_keys(settings)
    catalogue = load_catalogue(settings.catalogue, settings.model_dir)
    unknown = [model_id for model_id in settings.preload if model_id not in catalogue]
    if unknown:
        raise OrchestratorError(f"AIO_PRELOAD names models not in the catalogue: {unknown}")
    orchestrator = Orchestrator(settings, catalogue)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("settings %s", settings.summary(), extra={"event": "settings"})
        preloading = asyncio.create_task(_preload(orchestrator))
        yield
        log.info("draining", extra={"event": "draining"})
        preloading.cancel()
        await orchestrator.models.close()
        log.info("stopped", extra={"event": "stopped"})

    docs = settings.docs_enabled
    app = FastAPI(
        title="ALT_LAS AI Orchestrator",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    app.state.orchestrator = orchestrator
    app.state.metrics = Metrics(orchestrator.models)
    install_error_handlers(app)
    inference = models.Inference(orchestrator, app.state.metrics)
    direct = [Route("/api/inference", inference, methods=["POST"], include_in_schema=False)]
    _document(app, {"/api/inference": {"post": inference.openapi()}})
    # Inference routes come first, since a request is matched against routes in order.
    routers = [module.router for module in (models, orchestrated, openai, oip, health, metrics)]
    for router in routers:
        app.include_router(router)
    # Also in the router, so that another method on the path gets 405.
    app.router.routes[:0] = direct
    # Each route itself, for labelling a refused request: the app's own list holds the
    # included routers, whose match names no route.
    routes = [*direct, *(route for router in routers for route in router.routes)]
    _add_middleware(app, settings, keys, direct, routes)
    return app


def _document(app: FastAPI, paths: dict[str, Any]) -> None:
    """Add the direct routes' operations to the OpenAPI document FastAPI generates."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            generate()["paths"].update(paths)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _add_middleware(
    app: FastAPI,
    settings: Settings,
    keys: KeyRing | None,
    direct: list[Route],
    routes: list[BaseRoute],
) -> None:
    """Outermost last: request context, CORS (so refusals carry CORS headers too and
    preflights need no key), keys and rate, the deadline, then the direct routes."""
    app.add_middleware(DirectRoutes, routes=direct)
    app.add_middleware(Deadline, timeout_s=settings.request_timeout_s)
    limiter = None
    if settings.rate_limit_per_s > 0:
        limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.add_middleware(Guard, keys=keys, limiter=limiter, routes=routes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        RequestContext, max_body_bytes=settings.max_body_bytes, metrics=app.state.metrics
    )


async def _preload(orchestrator: Orchestrator) -> None:
    # All at once: an LLM loads mostly in native code off the event loop, so a classifier
    # loads meanwhile and the service is ready sooner (under a memory budget the manager
    # still loads one at a time).
    await asyncio.gather(
        *(orchestrator.models.load(model_id) for model_id in orchestrator.settings.preload),
        return_exceptions=True,
    )
    if all(orchestrator.models.is_ready(m) for m in orchestrator.settings.preload):
        log.info("ready", extra={"event": "ready"})


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment, logging set up."""
    settings = Settings()
    configure_logging(settings)
    return create_app(settings)
