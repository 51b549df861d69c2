"""The HTTP service: :func:`serve` loads a model and runs it with uvicorn.

The service is split by job: :mod:`~mmie.serve.routes` (the endpoints, :func:`create_app`),
:mod:`~mmie.serve.schemas` (request / response schemas), :mod:`~mmie.serve.parsing` (bodies
and pictures), :mod:`~mmie.serve.limits` (body size and time, the bearer token),
:mod:`~mmie.serve.batching` (micro-batching), :mod:`~mmie.serve.holder` (the loaded models and
the request rules) and :mod:`~mmie.serve.page` (the web page and the offline docs page).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from pathlib import Path
from typing import Any

import uvicorn

import mmie
from mmie.errors import ConfigError
from mmie.serve.batching import MicroBatcher
from mmie.serve.holder import ModelHolder, task_name
from mmie.serve.routes import MB, create_app

log = logging.getLogger("mmie.serve")

__all__ = ["create_app", "serve", "MicroBatcher", "ModelHolder", "task_name", "MB",
           "check_listen_address", "TOKEN_ENV"]

TOKEN_ENV = "MMIE_TOKEN"


def check_listen_address(host: str, port: int) -> None:
    """Fail at once (before any model is loaded) when ``host:port`` cannot be listened on:
    a port outside 0..65535, an unknown host, or an address in use."""
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"--port {port}: a TCP port is between 0 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: unknown host ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose "
                              "another --port (or stop what uses it)") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *,
          re_model_dir: str | Path | None = None, log_level: str = "info",
          token: str | None = None, **limits: Any) -> None:
    """Load ``model_dir`` and serve it with uvicorn (blocks). With ``re_model_dir`` the app
    also gets ``POST /extract`` from ``mmie.pipeline(ner=<the loaded model>, re=re_model_dir)``
    (the NER model is loaded once). ``token`` (default ``$MMIE_TOKEN``) requires
    ``Authorization: Bearer <token>``. ``limits`` go to :func:`create_app`."""
    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    check_listen_address(host, port)
    if not _is_loopback(host) and not token:
        log.warning("serving on %s without a token: anyone who can reach port %d can use the "
                    "model; pass --token (or set %s)", host, port, TOKEN_ENV)
    predictor = mmie.load(model_dir)
    pipeline = mmie.pipeline(ner=predictor, re=re_model_dir) if re_model_dir else None
    app = create_app(predictor, pipeline=pipeline, token=token, **limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
