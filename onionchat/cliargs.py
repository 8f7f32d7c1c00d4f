"""The --config option of every onionchat command, in any position, and saying where data goes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from onionchat import config as configmod
from onionchat.config import Config

DEPTHS = 3  # onionchat [--config] COMMAND [--config] ACTION [--config]


def add_config_option(parser: argparse.ArgumentParser, depth: int) -> None:
    """Let ``parser`` (at ``depth``: 0 the program, 1 a command, 2 an action) take --config.

    Each depth keeps its own value: argparse copies a subcommand's defaults over the values
    parsed before it, so one shared name silently dropped ``onionchat --config F staff add``'s F.
    resolve_config() puts them together afterwards.
    """
    parser.add_argument("--config", metavar="FILE", dest=f"config_{depth}", default=None,
                        help=f"config file (default: ${configmod.ENV_CONFIG}, then ./{configmod.CONFIG_NAME}, "
                             "then the default data directory's); may stand before or after the command")


def resolve_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set ``args.config`` from --config wherever it stood; two different files are an error."""
    given = [value for depth in range(DEPTHS) if (value := getattr(args, f"config_{depth}", None))]
    if len({Path(v).expanduser().resolve() for v in given}) > 1:
        parser.error(f"--config was given more than once, with different files: {', '.join(given)}")
    args.config = given[0] if given else None


def load_config(args: argparse.Namespace, *, writes: bool | Callable[[Config], bool] = False) -> Config:
    """The config for ``args``; if the command ``writes`` to the data directory, say which one.

    Said on stderr unless the person named the config (--config, $ONIONCHAT_CONFIG): keys and
    accounts must never land in a directory nobody expected. ``writes`` may depend on the config.
    """
    found = configmod.locate_config(args.config)
    config = configmod.load(found.path)
    if not found.named and (writes(config) if callable(writes) else writes):
        print(f"onionchat: using the data directory {config.data_dir} ({found.how}; "
              "choose another with --config FILE)", file=sys.stderr)
    return config
