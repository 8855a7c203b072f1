"""``python -m dfdetect.serving``: the local model server, with tensorflow_model_server's flags."""

import argparse
import sys

from dfdetect.errors import DfdetectError
from dfdetect.logs import configure_logging
from dfdetect.serving.server import ServerOptions, add_server_flags, serve


def main(argv=None) -> int:
    """Run the server with tensorflow_model_server's flags; the exit status (2 after printing a DfdetectError)."""
    parser = argparse.ArgumentParser(prog="python -m dfdetect.serving",
                                     description="Local drop-in for tensorflow_model_server.")
    add_server_flags(parser)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        return serve(ServerOptions.from_args(args))
    except DfdetectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


sys.exit(main())
