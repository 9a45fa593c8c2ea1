#!/usr/bin/env bash
# Checkpoint size and write time of the default windows (10 s and 1 min means of every
# field) at SENSORS simulated sensors, and how long the next run takes to load and
# restore them.
#
#   scripts/bench-checkpoint.sh target/release/smartgrid 1000 [SECONDS]
#
# Run 1 runs SECONDS (default 45) of real-time 12 Hz readings and stops with SIGTERM
# (`--for`), which checkpoints the open windows; run 2 restores them and stops.
set -euo pipefail
bin=$(realpath "$1")
sensors=$2
seconds=${3:-45}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/p.yaml" <<YAML
pipeline: checkpoint-bench
nodes:
  meters: { type: simulate, sensors: $sensors, rate: 12, seed: 7 }
  readings: { type: decode, input: meters, format: clemap }
  means_10s: { type: window_mean, input: readings, size: 10s }
  means_1m: { type: window_mean, input: readings, size: 1m }
  out_10s: { type: file, input: means_10s, path: out_10s.lp }
  out_1m: { type: file, input: means_1m, path: out_1m.lp }
YAML
field() { grep -o "$1=[0-9.]*" | head -1 | cut -d= -f2; }
SMARTGRID_LOG=info "$bin" run "$dir/p.yaml" --for "${seconds}s" 2> "$dir/run1.log"
line=$(grep "state checkpointed" "$dir/run1.log" | sed 's/\x1b\[[0-9;]*m//g')
bytes=$(echo "$line" | field bytes)
write_ms=$(echo "$line" | field took_ms)
readings=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/run1.log" | grep stopped | field readings.readings)
SMARTGRID_LOG=info "$bin" run "$dir/p.yaml" --for 1s 2> "$dir/run2.log"
clean=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/run2.log")
load_ms=$(echo "$clean" | grep "restoring the state" | field took_ms)
restore_ms=$(echo "$clean" | grep "open windows restored" | field took_ms)
echo "sensors=$sensors readings=$readings checkpoint_bytes=$bytes write_ms=$write_ms load_ms=$load_ms restore_windows_ms=$restore_ms"
