#!/usr/bin/env bash
# Regenerates the seed corpora, crates/fuzz/corpus/<target>/<name>, from the
# project's test fixtures (the IKE and BGP hex fixtures and captures in
# crates/tunnel/tests and crates/bgp/tests/wire), real in-memory IKE
# exchanges, sealed ESP packets and deploy/examples/*.toml: see
# examples/seed.rs. Named seeds are committed; the hash-named files that
# fuzzing adds to corpus/<target>/ are ignored by git (corpus/.gitignore).
#
#   crates/fuzz/seed.sh          # rewrite the named seeds in place
#   crates/fuzz/seed.sh DIR      # write them under DIR instead
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-corpus}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
if [ "$out" = "$PWD/corpus" ]; then
    # Drop the old named seeds (not what fuzzing found) before rewriting.
    find corpus -mindepth 2 -type f ! -regex '.*/[0-9a-f]\{40\}' -delete 2>/dev/null || true
fi
cargo run -q --locked --example seed -- "$out"
