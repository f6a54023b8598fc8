#!/usr/bin/env bash
# The inner loop: the same gates as scripts/test.sh, on every test but the slow and acceptance tiers.
set -euo pipefail
exec bash "$(dirname "$0")/test.sh" -m "not slow and not acceptance" "$@"
