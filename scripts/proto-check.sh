#!/usr/bin/env bash
# CI gate for the contracts: buf lint, buf breaking against the committed baseline, then
# regenerate libs/contracts/src/gen and fail if that changed anything git knows about.
# The individual steps are the npm scripts proto:lint, proto:breaking and proto, so each
# command is defined in exactly one place (package.json).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

gen_dir="libs/contracts/src/gen"
baseline="libs/contracts/baseline.binpb"
# The descriptor set with source info (comments) that other languages' tools and reflection
# clients can load: shipped beside the baseline, regenerated like the TypeScript.
descriptors="libs/contracts/rebootless.binpb"

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "proto-check: $root is not a git work tree; cannot tell whether generated code is committed" >&2
  exit 2
fi

if [[ ! -f "$baseline" ]]; then
  echo "proto-check: $baseline is missing; create it deliberately with: npm run proto:baseline" >&2
  exit 2
fi

echo "proto-check: buf lint"
npm run --silent proto:lint

# Compares with the last deliberately recorded contract, so it means something on a fresh
# clone of main. Refreshing the baseline (npm run proto:baseline) is a reviewed change.
echo "proto-check: buf breaking against $baseline"
npm run --silent proto:breaking

echo "proto-check: regenerating $gen_dir and $descriptors"
npm run --silent proto
npm run --silent proto:descriptors

# Untracked files count too: a new .proto whose generated file was never committed.
changed="$(git status --porcelain --untracked-files=all -- "$gen_dir" "$descriptors")"
if [[ -n "$changed" ]]; then
  echo "proto-check: generated code in $gen_dir is not what is committed." >&2
  echo "Run 'npm run proto && npm run proto:descriptors' and commit the result. Changed files:" >&2
  echo "$changed" >&2
  exit 1
fi

echo "proto-check: contracts lint clean, no breaking change, generated code up to date"
