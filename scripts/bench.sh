#!/usr/bin/env bash
# The benchmarks behind BENCHMARKS.md. Not part of the test suite (timings are
# machine-dependent); run by hand:  bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
bin=$PWD/target/release/smartgrid

echo "== throughput: decode → 10 s and 1 min window_mean (1000 sensors, 600 s of 12 Hz = 7.2 M readings)"
# 1 and 2 workers alternate, so a slow spell of the shared host hits both alike.
for run in 1 2 3 4 5 6 7 8 9 10; do
  for workers in 1 2; do
    SMARTGRID_LOG=warn "$bin" bench --sensors 1000 --seconds 600 --workers "$workers" | tail -1 | sed "s/^/workers=$workers run=$run /"
  done
done

# Peak resident set of `smartgrid run` on the embedded default (1000 simulated sensors at
# 12 Hz) for $2 seconds with binary $1, and a check that every complete 10 s window
# (not the first, nor the last one flushed at shutdown) holds 1000 sensors × 120
# readings: the embedded broker skipped nothing.
memory() {
  local bin=$1 seconds=$2 dir pid peak=0 hwm
  dir=$(mktemp -d)
  cp pipeline.yaml "$dir/"
  mkdir -p "$dir/models/default" && cp models/default/model.txt "$dir/models/default/"
  (
    cd "$dir"
    SENSORS=1000 SMARTGRID_LOG=off "$bin" run pipeline.yaml --for "${seconds}s" > /dev/null &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [ "${hwm:-0}" -gt "$peak" ] && peak=${hwm:-0}
      sleep 1
    done
    wait "$pid"
    printf 'binary=%s seconds=%s peak_rss_kib=%s ' "$(basename "$(dirname "$bin")")" "$seconds" "$peak"
    awk '{ t = $NF; n[t]++; if (match($2, /count=[0-9.]+/)) c[t] += substr($2, RSTART + 6, RLENGTH - 6)
           if (min == "" || t + 0 < min + 0) min = t; if (max == "" || t + 0 > max + 0) max = t }
         END { for (t in n) if (t != min && t != max) { k++; if (n[t] != 1000 || c[t] != 120000) short++ }
               print "complete_windows=" k " short=" short + 0 }' data/means_10s.lp
  )
  rm -rf "$dir"
}

echo "== memory: the embedded default with 1000 simulated sensors at 12 Hz"
# The release build, and the `dist` build a Raspberry Pi runs (docs/deploy.md).
cargo build --profile dist --locked -q
for seconds in 75 180; do
  memory "$bin" "$seconds"
  memory "$PWD/target/dist/smartgrid" "$seconds"
done

echo "== memory: the MQTT layer alone (embedded broker → one subscriber, 1000 sensors at 12 Hz for 5 s)"
cargo build --release --locked -q -p smartgrid-operators --example embedded_memory
for run in 1 2 3; do
  "$PWD/target/release/examples/embedded_memory" --sensors 1000 --seconds 5 | sed "s/^/run=$run /"
done

echo "== prediction join: compare_with_lag (timely) vs differential-dataflow (1000 sensors × 1440 windows)"
cargo build --release --locked -q -p smartgrid-operators --example join_bench
join=$PWD/target/release/examples/join_bench
for run in 1 2 3 4 5; do
  for variant in feed timely differential; do
    "$join" --variant "$variant" --sensors 1000 --windows 1440 | sed "s/^/run=$run /"
  done
done
for run in 1 2; do
  "$join" --variant differential-unbounded --sensors 1000 --windows 1440 | sed "s/^/run=$run /"
done
