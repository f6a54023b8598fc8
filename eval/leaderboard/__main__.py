"""``python -m eval.leaderboard``: the same command as ``rerank leaderboard``."""

import sys

from rerank.cli import main

if __name__ == "__main__":
    sys.exit(main(["leaderboard", *sys.argv[1:]]))
