#!/usr/bin/env bash
# bench/gateway.sh: what one gateway Collector core handles. The peer
# Collector of bench/run.sh runs as a gateway (otlp receiver -> batch ->
# otlp exporter) in front of lpbench's counting sink; logpump sends it N
# lines of one file through `endpoints`. Prints the gateway's CPU seconds
# and records per gateway CPU second, and the agent's CPU, once per
# repetition. Run bench/run.sh once first (it builds bench/.build).
#
#   N=1000000 REPS=3 COMPRESSION=gzip bench/gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/bench/.build
N=${N:-1000000}
REPS=${REPS:-3}
COMP=${COMPRESSION:-gzip}
. bench/gatewaylib.sh
"$B/lpbench" gen -n "$N" -o "$dir/lines.log" >/dev/null

for rep in $(seq "$REPS"); do
	# Files of the last repetition would be read before the new processes write them.
	rm -rf "$dir/state" "$dir/sink.out" "$dir/gateway.log" && mkdir -p "$dir/state"
	start_sink "$N"
	pids=("$sink")
	start_gateway gateway
	pids+=("$gw")
	cat >"$dir/logpump.yaml" <<YAML
state_dir: $dir/state
log_level: warn
sources:
  app: {type: file, include: [$dir/lines.log], start_at: beginning}
exporters:
  gateway:
    type: otlp_grpc
    endpoints: [$gaddr]
    tls: {insecure: true}
    compression: $COMP
pipelines:
  main: {sources: [app], exporters: [gateway]}
YAML
	t0=$(date +%s.%N)
	"$B/logpump" run -config "$dir/logpump.yaml" 2>"$dir/logpump.log" &
	lp=$!
	pids+=("$lp")
	until grep -q "unique $N/$N" "$dir/sink.out"; do sleep 0.05; done
	wall=$(echo "$(date +%s.%N) - $t0" | bc)
	g=$(cpu "$gw") a=$(cpu "$lp")
	echo "rep $rep compression=$COMP lines=$N wall_s=$wall gateway_cpu_s=$g records_per_gateway_cpu_s=$(echo "$N / $g" | bc) agent_cpu_s=$a"
	kill "$lp" "$gw" "$sink"
	wait 2>/dev/null || true
	pids=()
done
