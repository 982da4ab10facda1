#!/usr/bin/env bash
# For each of issue 11's fixes 1-4: revert it in a checkout at /work/wt-prove (made from commit
# 09a2b38; revert.py edits that source), build, and time how long the
# schedule explorer (sequential, memory and SQLite, fresh seeds) needs to find the broken rule.
cd /work/wt-prove
for fix in 1 2 3 4; do
  git checkout -q -- Sources
  python3 /work/prove/revert.py /work/wt-prove $fix
  swift build -c release --product kofka-cli >/dev/null 2>&1 || { echo "fix $fix: build failed"; continue; }
  for storage in memory: sqlite:/tmp/prove-$fix.db; do
    for seed in 1000 2000 3000; do
      rm -f /tmp/prove-$fix.db*
      out=$(timeout 700 .build/release/kofka-cli lab explore --seconds 600 --storage $storage --seed $seed --stop-on-first 2>&1)
      echo "fix $fix reverted, $storage, seed $seed: $(echo "$out" | grep -E '^VIOLATION' | head -1)"
      echo "$out" | grep -E "^  [a-z]|^replay:|minimal history" | head -4 | sed 's/^/    /'
    done
  done
done
git checkout -q -- Sources
