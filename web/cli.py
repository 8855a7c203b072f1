"""``dfdetect web``: the web page and its JSON API, in front of the model server.

    dfdetect web                                   # http://127.0.0.1:8080, model server localhost:8500
    dfdetect web --host 0.0.0.0 --server serving:8500 --max-upload-mb 200

Every flag's default comes from an environment variable ``DFDETECT_WEB_<FLAG>`` when it is set
(``DFDETECT_WEB_SERVER=serving:8500``), which is how a container is configured.
"""

from __future__ import annotations

import dataclasses
import signal
import logging

from dfdetect.cliformat import HelpFormatter
from dfdetect.web.settings import WebSettings, converter, env_defaults, env_name

log = logging.getLogger(__name__)

_HELP = {
    "host": "address to listen on (0.0.0.0 to accept connections from other machines)",
    "port": "HTTP port of the page and the API",
    "server": "model server's gRPC address, HOST:PORT (or dns:///NAME:PORT with --load-balancing round_robin)",
    "load_balancing": "gRPC load balancing: pick_first (one connection) or round_robin (requests spread over every "
                      "address the server name resolves to: every pod behind a headless Service)",
    "model_name": "served model name",
    "model_card": "model card JSON, its version folder or the model's folder of versions (its calibrated "
                  "threshold decides); default: the answering version's card in --model-repository",
    "model_repository": "local model repository where the answering version's model card is looked up",
    "threshold": "decision threshold (default: the model card's, else 0.5)",
    "frames": "frames sampled per video, evenly spaced",
    "max_upload_mb": "largest upload accepted, in MB (413 beyond)",
    "max_concurrent": "analyses run at once; more uploads wait their turn",
    "max_waiting": "uploads that may be arriving or waiting beyond those being analysed; more are refused with 503 "
                   "(bounds the temporary disk space: each upload in flight is on disk)",
    "timeout": "seconds each model-server call may take, retries included",
    "upload_idle_seconds": "an upload that sends nothing for this long is cut off with 408 (slow uploads cannot "
                           "hold the upload slots)",
    "upload_seconds": "the longest an upload may take to arrive, in seconds (408 beyond)",
    "max_image_megapixels": "larger images and video frames are refused before they are decoded (image bombs)",
}


def add_web_parser(sub) -> None:
    """Add ``web`` to the subcommands: a flag per WebSettings field, its default from DFDETECT_WEB_<FLAG>."""
    p = sub.add_parser(
        "web", help="the web page: upload an image or a video, see the verdict, the faces and the timeline",
        description="Serve the dfdetect web page and its JSON API (POST /api/analyze; schema at /openapi.json) "
                    "in front of the model server. Uploads are checked by content, analysed by the client "
                    "(the same face pipeline as training) and deleted at once. Defaults come from "
                    "DFDETECT_WEB_<FLAG> environment variables when set.",
        formatter_class=HelpFormatter,
    )
    try:
        defaults = {**dataclasses.asdict(WebSettings()), **env_defaults()}
    except ValueError as e:
        defaults = dataclasses.asdict(WebSettings())
        p.set_defaults(env_error=str(e))
    for f in dataclasses.fields(WebSettings):
        p.add_argument("--" + f.name.replace("_", "-"), type=converter(f), default=defaults[f.name],
                       help=f"{_HELP[f.name]} (${env_name(f.name)})")
    p.set_defaults(handler=run_web_command)


def run_web_command(args) -> int:
    """Serve the page and its API until SIGTERM; 0 then, SystemExit naming the problem for bad settings."""
    import uvicorn

    from dfdetect.web.app import create_app

    if getattr(args, "env_error", None):
        raise SystemExit(f"dfdetect web: {args.env_error}")
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(WebSettings)}
    try:
        settings = WebSettings(**values).validate()
    except ValueError as e:
        raise SystemExit(f"dfdetect web: {e}") from None
    app = create_app(settings)
    log.info("web page on http://%s:%d (model server %s, model %s)", settings.host, settings.port,
             settings.server, settings.model_name)
    # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler it found:
    # with this one the process ends with 0 (a deliberate stop), not killed by the signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=30)
    return 0
