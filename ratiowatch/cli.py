"""The ``ratiowatch`` command line: this file only discovers and dispatches the sub-commands.

Each sub-command is one module in ``ratiowatch/commands/`` with ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> exit code``.
"""


from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from ratiowatch import __version__, logs
from ratiowatch.errors import ConfigError

__all__ = ["main", "build_parser"]

# What `ratiowatch --help` shows: written for the user, not for the reader of this file.
DESCRIPTION = ("ratiowatch watches market scenarios (ratios, spreads, levels) over streaming ticks and alerts "
               "when one crosses its threshold with its confirmations. Start with `ratiowatch run`.")
EPILOG = ("exit codes: 0 ok; 1 a run that found a problem (a broker out of reach, chaos saw a loss); "
          "2 bad input (config, arguments); 3 a role unready too long; 130 interrupted. "
          "`ratiowatch COMMAND --help` for each command.")


def _commands() -> list:
    import ratiowatch.commands as pkg

    mods = [importlib.import_module(f"{pkg.__name__}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)
            if not m.name.startswith("_")]
    return sorted((m for m in mods if hasattr(m, "NAME")), key=lambda m: m.NAME)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="ratiowatch", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"ratiowatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers = {}
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        handlers[mod.NAME] = mod.run
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The Kafka clients' known-harmless ERROR records (a group join, a version probe, an idle
    # connection closed) at the level they deserve: ERROR in this log means an error.
    logs.install()
    if args.verbose == 0:
        # faust/mode report routine back-pressure (a timer running past its interval, a full
        # producer buffer) as warnings; the operator sees real problems without that noise.
        for name in ("mode.timers", "faust.transport.producer"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return int(handlers[args.command](args) or 0)
    except ConfigError as e:
        print(f"ratiowatch: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
