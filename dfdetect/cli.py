"""The ``dfdetect`` command: one subcommand per stage.

Parsers are cheap to build; each handler imports its stage (and TensorFlow) only when run. In an
install without a stage's extra (the thin client: ``pip install dfdetect``), the stage's command
says which extra to install instead of failing on an import.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dfdetect import __version__
from dfdetect.errors import DfdetectError
from dfdetect.logs import configure_logging

log = logging.getLogger("dfdetect")

# The extra that brings each command's dependencies (pyproject.toml); predict needs none.
EXTRAS = {"prepare": "train", "train": "train", "evaluate": "train", "export": "export", "serve": "serve",
          "web": "web"}


def build_parser() -> argparse.ArgumentParser:
    from dfdetect.training.cli import add_evaluate_parser, add_prepare_parser, add_train_parser

    parser = argparse.ArgumentParser(
        prog="dfdetect",
        description="Deepfake detection for face images and videos: prepare data, train, export, serve, predict.",
    )
    parser.add_argument("--version", action="version", version=f"dfdetect {__version__}")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default: $DFDETECT_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(title="stages", metavar="COMMAND", required=True)
    add_prepare_parser(sub)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    from dfdetect.export.cli import add_export_parser

    add_export_parser(sub)
    from dfdetect.serving.cli import add_serve_parser

    add_serve_parser(sub)
    from dfdetect.client.cli import add_predict_parser

    add_predict_parser(sub)
    from dfdetect.web.cli import add_web_parser

    add_web_parser(sub)
    for command, stage_parser in sub.choices.items():
        stage_parser.set_defaults(command=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_level)
    except ValueError as e:
        parser.error(str(e))
    try:
        return int(args.handler(args) or 0)
    except DfdetectError as e:
        log.error("%s", e)
        return 2
    except ModuleNotFoundError as e:
        extra = EXTRAS.get(getattr(args, "command", ""))
        if extra is None or not e.name or e.name.split(".")[0] in ("dfdetect", "__main__"):
            raise
        log.error("dfdetect %s needs %s, which this installation does not have: install the %r extra "
                  "(pip install 'dfdetect[%s]', or `make install` for every stage)", args.command, e.name, extra, extra)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
