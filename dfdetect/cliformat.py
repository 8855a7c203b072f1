"""The help formatter of every stage's subcommand (``dfdetect prepare --help``, ...).

It lives apart from :mod:`dfdetect.cli`, which imports every stage to build their parsers, so
that a stage's command line (the client's, the web page's) imports no other stage.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every subcommand's help: defaults shown where there is one (not for flags that are off, nor
    for options whose absence the help itself explains)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)
