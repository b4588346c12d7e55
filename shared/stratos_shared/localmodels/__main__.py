"""CLI: ``python -m stratos_shared.localmodels build --name tiny-1m [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from stratos_shared.localmodels.build import build_tiny_model, ensure_tiny_model
from stratos_shared.localmodels.config import RECIPES
from stratos_shared.localmodels.tokenizer import read_marker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stratos_shared.localmodels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or fetch from the cache) a tiny local base model")
    build.add_argument("--name", required=True, choices=sorted(RECIPES), help="named model size")
    build.add_argument(
        "--out",
        default=None,
        help="write the model to exactly this directory (always rebuilds); default: the content-addressed cache",
    )
    build.add_argument(
        "--cache-dir", default=None, help="cache root (default $STRATOS_MODEL_CACHE or ~/.cache/stratos/models)"
    )
    sub.add_parser("list", help="list the named model sizes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "list":
        for name, recipe in sorted(RECIPES.items()):
            print(f"{name}\t{recipe.content_hash()}\t{recipe.spec}")
        return 0
    path = build_tiny_model(RECIPES[args.name], args.out) if args.out else ensure_tiny_model(args.name, args.cache_dir)
    print(json.dumps({"path": str(path), **read_marker(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
