#!/usr/bin/env bash
# Cluster ingest (docs/scaling.md, "Figures"): a backlog of Clemap messages queued in a
# local mosquitto for the pipeline's sessions, drained by 1, 2 and 3 processes of
# mqtt → decode → 10 s window_mean → file. Not part of the test suite; run by hand:
#   bash scripts/bench-cluster.sh            (SMARTGRID_BIN=… to use another build)
# Prints per run: processes, messages, seconds from the first message received to the
# last, messages/s, and the CPU seconds each smartgrid process and mosquitto used.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SMARTGRID_BIN:-$PWD/target/release/smartgrid}
sensors=${SENSORS:-1000}
duration=${DURATION:-60s}
runs=${RUNS:-2}
wal=${WAL:-}   # WAL='wal: {}' to log every message
[ -x "$bin" ] || { echo "no smartgrid binary at $bin (cargo build --release, or SMARTGRID_BIN=…)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

one_run() {
  local processes=$1 dir broker port pids=() http=() i
  dir=$(mktemp -d)
  port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 100\n' "$port" > "$dir/mosquitto.conf"
  mosquitto -c "$dir/mosquitto.conf" > "$dir/mosquitto.log" 2>&1 &
  broker=$!
  cat > "$dir/p.yaml" <<EOF
pipeline: bench
nodes:
  meters:
    type: mqtt
    url: mqtt://127.0.0.1:$port
    topics: [data/realtime/feature/+]
    qos: 1
    channel_capacity: 100000
    $wal
  readings: { type: decode, input: meters, format: clemap, idle_timeout: 1h }
  means: { type: window_mean, input: readings, size: 10s }
  store: { type: file, input: means, path: means.lp }
EOF
  start_cluster() {
    pids=(); http=()
    # New ports for every start: the previous run's may still be held.
    : > "$dir/hosts"
    for ((i = 0; i < processes; i++)); do echo "127.0.0.1:$(free_port)" >> "$dir/hosts"; done
    for ((i = 0; i < processes; i++)); do
      local h; h=$(free_port); http+=("$h")
      local cluster=()
      [ "$processes" -gt 1 ] && cluster=(--hosts "$dir/hosts" --process "$i")
      (cd "$dir" && SMARTGRID_LOG=warn exec "$bin" run p.yaml "${cluster[@]}" --http "127.0.0.1:$h" 2>> "$dir/run.$i.log") &
      pids+=($!)
    done
  }
  subscribed() {
    local n=0 h
    for h in "${http[@]}"; do
      curl -s "http://127.0.0.1:$h/metrics" 2>/dev/null | grep -q 'smartgrid_subscribed{node="meters"} 1' && n=$((n + 1))
    done
    [ "$n" -eq "$processes" ]
  }
  received() {
    local sum=0 h v
    for h in "${http[@]}"; do
      v=$(curl -s "http://127.0.0.1:$h/metrics" 2>/dev/null | awk '/^smartgrid_messages_total\{node="meters"\}/ { print $2 }')
      sum=$((sum + ${v:-0}))
    done
    echo "$sum"
  }
  # The sessions first (persistent, so the broker queues for them), then the backlog.
  start_cluster
  local waited=0
  until subscribed; do
    sleep 0.2; waited=$((waited + 1))
    [ "$waited" -lt 300 ] || { echo "not subscribed after 60 s; see $dir/run.*.log" >&2; exit 1; }
  done
  kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
  "$bin" simulate --broker "mqtt://127.0.0.1:$port" --sensors "$sensors" --duration "$duration" --fast 2> "$dir/simulate.log"
  local total broker_cpu0 first="" last now n
  total=$(( sensors * 12 * ${duration%s} ))
  broker_cpu0=$(cpu_s "$broker")
  start_cluster
  while :; do
    n=$(received)
    now=$(date +%s.%N)
    [ -z "$first" ] && [ "$n" -gt 0 ] && first=$now
    if [ "$n" -ge "$total" ]; then last=$now; break; fi
    sleep 0.05
  done
  local cpus=() pid
  for pid in "${pids[@]}"; do cpus+=("$(cpu_s "$pid")"); done
  local broker_cpu; broker_cpu=$(awk -v a="$(cpu_s "$broker")" -v b="$broker_cpu0" 'BEGIN { printf "%.2f", a - b }')
  kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
  kill "$broker"; wait "$broker" 2>/dev/null || true
  awk -v p="$processes" -v n="$total" -v f="$first" -v l="$last" -v c="${cpus[*]}" -v b="$broker_cpu" \
    'BEGIN { s = l - f; printf "processes=%d messages=%d seconds=%.2f messages_per_s=%.0f smartgrid_cpu_s=[%s] mosquitto_cpu_s=%s\n", p, n, s, n / s, c, b }'
  rm -rf "$dir"
}

for ((run = 1; run <= runs; run++)); do
  for processes in 1 2 3; do one_run "$processes"; done
done
