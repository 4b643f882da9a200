#!/usr/bin/env bash
# Prints the directory cargo builds this workspace into: `target/` unless CARGO_TARGET_DIR or a
# cargo config (`build.target-dir`) says otherwise; cargo itself answers. Scripts run the
# release binaries from "$(scripts/target-dir.sh)/release", never from a hardcoded path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir="$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[ -n "$dir" ] || { echo "target-dir.sh: cargo metadata names no target_directory" >&2; exit 1; }
echo "$dir"
