"""The ``onionchat`` command: init, serve, staff; the only place that configures logging."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from onionchat import __version__, eventloop, logs, storage
from onionchat import config as configmod
from onionchat.accounts import AccountStore, Role
from onionchat.cliargs import add_config_option, load_config, resolve_config
from onionchat.errors import OnionchatError
from onionchat.tor import cli as tor_cli

Command = Callable[[argparse.Namespace], int]


def cmd_init(args: argparse.Namespace) -> int:
    """Create the data directory (0700) and a commented config file with every default."""
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else configmod.default_data_dir()
    storage.ensure_dir(data_dir)
    path = data_dir / configmod.CONFIG_NAME
    if path.exists() and not args.force:
        print(f"{path} already exists; keeping it (use --force to overwrite)")
        return 0
    storage.write_atomic(path, configmod.render_template().encode())
    print(f"created {path}")
    print(f"next: onionchat staff add NAME --role admin --config {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run both sites until SIGTERM or Ctrl-C."""
    from onionchat.web import server

    config = load_config(args, writes=True)
    factory = eventloop.loop_factory(config.server.event_loop)
    logs.setup(config.server.log_level)
    server.disable_core_dumps()
    server.allow_open_files(config)
    storage.ensure_dir(config.data_dir)
    # asyncio.Runner rather than a global event loop policy: the choice stays with this command.
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(server.run(config, local=args.local))
    return 0


def read_password(args: argparse.Namespace) -> str:
    """From standard input with --password-stdin, else prompted twice without echo."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise OnionchatError("the two passwords differ; nothing was changed")
    return first


def accounts_of(args: argparse.Namespace, *, writes: bool = True) -> AccountStore:
    """The account store of the configured data directory (``writes``: say which one, if not named)."""
    config = load_config(args, writes=writes)
    return AccountStore(config.data_dir, password_min=config.staff.password_min)


def cmd_staff_add(args: argparse.Namespace) -> int:
    """Create a staff account."""
    store = accounts_of(args)
    store.add(args.name, read_password(args), Role(args.role))
    print(f"added {args.name} ({args.role})")
    return 0


def cmd_staff_list(args: argparse.Namespace) -> int:
    """List staff accounts."""
    accounts = accounts_of(args, writes=False).all()
    for account in accounts:
        state = " (disabled)" if account.disabled else ""
        two_factor = "\t2FA" if account.has_totp else ""
        print(f"{account.name}\t{account.role.value}{state}{two_factor}")
    if not accounts:
        print("no staff accounts yet: onionchat staff add NAME")
    return 0


def cmd_staff_remove(args: argparse.Namespace) -> int:
    """Delete a staff account."""
    accounts_of(args).remove(args.name)
    print(f"removed {args.name}")
    return 0


def cmd_staff_passwd(args: argparse.Namespace) -> int:
    """Set a new password."""
    store = accounts_of(args)
    store.set_password(args.name, read_password(args))
    print(f"changed the password of {args.name}")
    return 0


def cmd_staff_disable(args: argparse.Namespace) -> int:
    """Disable an account: it cannot log in, and a running server ends its session."""
    accounts_of(args).set_disabled(args.name, disabled=True)
    print(f"disabled {args.name}")
    return 0


def cmd_staff_enable(args: argparse.Namespace) -> int:
    """Enable a disabled account again."""
    accounts_of(args).set_disabled(args.name, disabled=False)
    print(f"enabled {args.name}")
    return 0


def cmd_staff_role(args: argparse.Namespace) -> int:
    """Give an account another role."""
    accounts_of(args).set_role(args.name, Role(args.role))
    print(f"{args.name} is now {args.role}")
    return 0


def cmd_staff_reset_2fa(args: argparse.Namespace) -> int:
    """Turn an account's two-factor login off, so that it is set up again (a lost phone)."""
    accounts_of(args).reset_totp(args.name)
    print(f"reset two-factor login of {args.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """All subcommands; every one takes --config, before or after the command and its action."""
    parser = argparse.ArgumentParser(prog="onionchat", description="Anonymous helpline chat over Tor, "
                                     "without JavaScript.")
    add_config_option(parser, 0)
    parser.add_argument("--version", action="version", version=f"onionchat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create the data directory and a config file")
    # Accepted only to be refused clearly in main(): init makes the config file, in --data-dir.
    p.add_argument("--config", dest="config_1", metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", metavar="DIR", help=f"default: {configmod.default_data_dir()}")
    p.add_argument("--force", action="store_true", help="overwrite an existing config file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="run the visitor and staff sites")
    add_config_option(p, 1)
    p.add_argument("--local", action="store_true", help="no Tor: serve on local ports only")
    p.set_defaults(func=cmd_serve)

    staff = sub.add_parser("staff", help="manage staff accounts")
    add_config_option(staff, 1)
    ssub = staff.add_subparsers(dest="staff_command", required=True, metavar="ACTION")

    def action(name: str, func: Command, help: str, *names: str, password: bool = False) -> argparse.ArgumentParser:
        p = ssub.add_parser(name, help=help)
        add_config_option(p, 2)
        for positional in names:
            p.add_argument(positional)
        if password:
            p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        p.set_defaults(func=func)
        return p

    p = action("add", cmd_staff_add, "add an account", "name", password=True)
    p.add_argument("--role", choices=[r.value for r in Role], default=Role.COUNSELLOR.value)
    action("list", cmd_staff_list, "list accounts")
    action("remove", cmd_staff_remove, "remove an account", "name")
    action("passwd", cmd_staff_passwd, "set a new password (signs the account out everywhere)", "name",
           password=True)
    action("disable", cmd_staff_disable, "disable an account (no login)", "name")
    action("enable", cmd_staff_enable, "enable a disabled account", "name")
    p = action("role", cmd_staff_role, "give an account another role", "name")
    p.add_argument("role", choices=[r.value for r in Role])
    action("reset-2fa", cmd_staff_reset_2fa, "turn two-factor login off so it is set up again", "name")
    tor_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors are one clear line on stderr, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve_config(parser, args)
    if args.command == "init" and args.config:
        parser.error("init writes a new config file: name its directory with --data-dir, not --config")
    func: Command = args.func
    try:
        return func(args)
    except OnionchatError as exc:
        print(f"onionchat: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"onionchat: {exc.strerror or exc}", file=sys.stderr)
        return 1
