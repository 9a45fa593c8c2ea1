#!/usr/bin/env bash
# What the HTTP listener costs a run that nobody scrapes, and one scraped every 5 s:
# the embedded default with 1000 simulated sensors at 12 Hz, with and without `--http`,
# alternated. Prints the CPU time and the peak resident set of each run (GNU time).
# Not part of the test suite; run by hand:
#   bash scripts/bench-http.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-75}
rounds=${2:-3}
# SMARTGRID_BIN: a binary built elsewhere (e.g. another CARGO_TARGET_DIR) instead.
if [ -z "${SMARTGRID_BIN:-}" ]; then
  cargo build --release --locked -q
fi
bin=${SMARTGRID_BIN:-$PWD/target/release/smartgrid}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp pipeline.yaml "$dir/"
mkdir -p "$dir/models/default" && cp models/default/model.txt "$dir/models/default/"
cd "$dir"

# One run: $1 = a label, the rest = extra arguments; GNU time gives the CPU time and the
# peak resident set of the whole run. "scraped" reads /metrics every 5 s meanwhile.
measure() {
  local label=$1
  shift
  rm -rf data .smartgrid
  local scraper=""
  if [ "$label" = scraped ]; then
    ( sleep 5; while curl -sf "http://127.0.0.1:9898/metrics" > /dev/null; do sleep 5; done ) &
    scraper=$!
  fi
  SENSORS=1000 SMARTGRID_LOG=off /usr/bin/time -f "user_s=%U sys_s=%S peak_rss_kib=%M" \
    "$bin" run pipeline.yaml --for "${seconds}s" "$@" 2>&1 > /dev/null | tail -1 | sed "s/^/$label /"
  if [ -n "$scraper" ]; then
    kill "$scraper" 2>/dev/null || true
    wait "$scraper" 2>/dev/null || true
  fi
}

for round in $(seq 1 "$rounds"); do
  measure without | sed "s/^/round=$round /"
  measure idle --http 127.0.0.1:9898 | sed "s/^/round=$round /"
  measure scraped --http 127.0.0.1:9898 | sed "s/^/round=$round /"
done
