#!/usr/bin/env bash
# The benchmarks behind BENCHMARKS.md. Not part of the test suite (timings are
# machine-dependent); run by hand:  bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
bin=$PWD/target/release/smartgrid

echo "== throughput: decode → 10 s and 1 min window_mean (1000 sensors, 120 s of 12 Hz)"
for workers in 1 2; do
  for run in 1 2 3; do
    SMARTGRID_LOG=warn "$bin" bench --sensors 1000 --seconds 120 --workers "$workers" | tail -1 | sed "s/^/workers=$workers run=$run /"
  done
done

echo "== memory: the embedded default with 1000 simulated sensors at 12 Hz for 70 s"
dir=$(mktemp -d)
cp pipeline.yaml "$dir/"
(cd "$dir" && SENSORS=1000 SMARTGRID_LOG=warn "$bin" run pipeline.yaml --for 70s > /dev/null) &
pid=$!
sleep 1
peak=0
while kill -0 "$pid" 2>/dev/null; do
  child=$(pgrep -P "$pid" smartgrid || echo "$pid")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$child/status" 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak" ] && peak=$rss
  sleep 1
done
wait "$pid" || true
echo "peak_rss_kib=$peak"
echo "readings stored (1 min means): $(wc -l < "$dir/data/means_1m.lp")"
rm -rf "$dir"
