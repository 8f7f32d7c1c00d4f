"""CLI subcommands for Tor: 'onion show', 'staff-key add/list/remove', 'systemd-unit'."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from onionchat import config as configmod
from onionchat.cliargs import add_config_option, load_config
from onionchat.config import Config
from onionchat.tor.systemd import DEFAULT_DATA_DIR, DEFAULT_USER, render_unit

if TYPE_CHECKING:
    from onionchat.tor.publish import OnionAddresses

# The verbs import keys, stem and segno only when they run: every other command starts faster.


def _addresses(config: Config) -> OnionAddresses:
    from onionchat.tor.keys import service_keys
    from onionchat.tor.publish import OnionAddresses, read_torrc_addresses

    if config.tor.mode == "torrc":
        return read_torrc_addresses(config)
    keys = service_keys(config.data_dir)  # created on first use: the address is fixed from now on
    return OnionAddresses(visitor=keys.visitor.address, staff=keys.staff.address)


def cmd_onion_show(args: argparse.Namespace) -> int:
    """Print both addresses and a QR code of the visitor address."""
    import segno

    from onionchat.tor.keys import StaffClientKeys

    # The keys are made on first use, except where tor keeps them (torrc mode).
    config = load_config(args, writes=lambda c: c.tor.mode != "torrc")
    addresses = _addresses(config)
    visitor_url = f"http://{addresses.visitor}/"
    print(f"visitor: {visitor_url}")
    print(f"staff:   http://{addresses.staff}/")
    if config.tor.mode != "torrc":
        if config.tor.staff_client_auth:
            count = len(StaffClientKeys(config.data_dir).load())
            print(f"         (client authorization: {count} staff key(s); "
                  "add one with 'onionchat staff-key add LABEL')")
        else:
            print("         (no client authorization: tor.staff_client_auth is false)")
        print(f"keys:    {config.data_dir / 'onion'} -- back up this directory; it holds the addresses")
    if not args.no_qr:
        print()
        segno.make(visitor_url, error="m").terminal(out=sys.stdout, compact=True)
    return 0


def cmd_staff_key_add(args: argparse.Namespace) -> int:
    """Create a staff client key; print the private half once, keep only the public half."""
    from onionchat.tor.keys import StaffClientKeys, auth_private_line, auth_server_line

    config = load_config(args, writes=True)
    staff = _addresses(config).staff
    pair = StaffClientKeys(config.data_dir).add(args.label)
    print(f"Added staff key {args.label!r}. Only its public half is stored; the private key below is shown "
          "this once.")
    print("Give it to the counsellor over a safe channel. A running onionchat accepts it within a few seconds.")
    print()
    print(f"Tor Browser, when http://{staff}/ asks for its key, paste:")
    print(pair.private)
    print()
    print(f"Other tor clients: a file {args.label}.auth_private in their ClientOnionAuthDir containing:")
    print(auth_private_line(staff, pair.private))
    if config.tor.mode == "torrc":
        print()
        print("tor.mode is torrc, so tor must know this key too: as root, write this line to "
              f"{Path(config.tor.hidden_service_dirs[-1]) / 'authorized_clients' / (args.label + '.auth')} "
              "and run 'systemctl reload tor':")
        print(auth_server_line(pair.public))
    return 0


def cmd_staff_key_list(args: argparse.Namespace) -> int:
    """List the labels (and public keys) allowed on the staff onion."""
    from onionchat.tor.keys import StaffClientKeys

    config = load_config(args)
    clients = StaffClientKeys(config.data_dir).load()
    for label, public in sorted(clients.items()):
        print(f"{label}\t{public}")
    if not clients:
        print("no staff keys yet: onionchat staff-key add LABEL")
    return 0


def cmd_staff_key_remove(args: argparse.Namespace) -> int:
    """Revoke a staff client key."""
    from onionchat.tor.keys import StaffClientKeys

    config = load_config(args, writes=True)
    StaffClientKeys(config.data_dir).remove(args.label)
    print(f"removed staff key {args.label!r}; a running onionchat stops accepting it within a few seconds")
    if config.tor.mode == "torrc":
        print("tor.mode is torrc: also delete its .auth file from authorized_clients and run 'systemctl reload tor'")
    return 0


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    """Print a systemd unit for this installation."""
    mode = args.mode
    if mode is None:
        path = configmod.find_config(args.config)
        mode = configmod.load(path).tor.mode if path is not None else "launch"
    executable = args.exec or shutil.which("onionchat") or "/usr/local/bin/onionchat"
    print(render_unit(executable=executable, mode=mode, user=args.user, data_dir=args.data_dir), end="")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add 'onion', 'staff-key' and 'systemd-unit' to the onionchat command."""
    onion = subparsers.add_parser("onion", help="the onion addresses")
    add_config_option(onion, 1)
    osub = onion.add_subparsers(dest="onion_command", required=True, metavar="ACTION")
    p = osub.add_parser("show", help="print both addresses and a QR code of the visitor address (made on first use)")
    add_config_option(p, 2)
    p.add_argument("--no-qr", action="store_true", help="no QR code")
    p.set_defaults(func=cmd_onion_show)

    keys = subparsers.add_parser("staff-key", help="client-authorization keys for the staff onion")
    add_config_option(keys, 1)
    ksub = keys.add_subparsers(dest="staff_key_command", required=True, metavar="ACTION")
    p = ksub.add_parser("add", help="create a key for one counsellor's Tor Browser")
    add_config_option(p, 2)
    p.add_argument("label", help="who or which device holds it, e.g. alice-laptop")
    p.set_defaults(func=cmd_staff_key_add)
    p = ksub.add_parser("list", help="list the keys")
    add_config_option(p, 2)
    p.set_defaults(func=cmd_staff_key_list)
    p = ksub.add_parser("remove", help="revoke a key")
    add_config_option(p, 2)
    p.add_argument("label")
    p.set_defaults(func=cmd_staff_key_remove)

    p = subparsers.add_parser("systemd-unit", help="print a systemd unit file")
    add_config_option(p, 1)
    p.add_argument("--mode", choices=("auto", "launch", "control", "torrc"), help="default: tor.mode of the config")
    p.add_argument("--user", default=DEFAULT_USER, help=f"service user (default {DEFAULT_USER})")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"data directory (default {DEFAULT_DATA_DIR})")
    p.add_argument("--exec", metavar="PATH", help="the onionchat program (default: the one on PATH)")
    p.set_defaults(func=cmd_systemd_unit)
