"""``dfdetect serve``: the local model server (see serving/server.py)."""

from __future__ import annotations

from dfdetect.cliformat import HelpFormatter


def add_serve_parser(sub) -> None:
    """Add ``serve`` to the subcommands, with the server's flags."""
    from dfdetect.serving.server import add_server_flags

    p = sub.add_parser(
        "serve",
        help="run the local model server (drop-in for tensorflow_model_server: gRPC 8500, REST 8501)",
        description="Serve SavedModel versions over TensorFlow Serving's gRPC and REST APIs, with its flags and "
                    "config files: version polling, labels, batching, warm-up, Prometheus metrics.",
        formatter_class=HelpFormatter,
    )
    add_server_flags(p)
    p.set_defaults(handler=run_serve_command)


def run_serve_command(args) -> int:
    """Run the model server with the parsed flags until SIGTERM or SIGINT; the exit status."""
    from dfdetect.serving.server import ServerOptions, serve

    return serve(ServerOptions.from_args(args))
