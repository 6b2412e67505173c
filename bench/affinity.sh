#!/usr/bin/env bash
# bench/affinity.sh: what sending to three gateways costs logpump, with and
# without affinity, against one gateway. N lines spread over PODS kubelet
# pod logs (the kubernetes processor names each pod) go through `endpoints`
# to gateway Collectors (otlp receiver -> batch -> otlp exporter) in front
# of lpbench's counting sink, in three variants per repetition, in turn:
# one endpoint; three; three with `affinity: {resource_attributes:
# [k8s.pod.uid]}`. Prints logpump's CPU seconds and CPU seconds per
# million lines for each. Run bench/run.sh once first (it builds
# bench/.build).
#
#   N=1000000 PODS=32 REPS=3 COMPRESSION=gzip bench/affinity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/bench/.build
N=${N:-1000000}
PODS=${PODS:-32}
REPS=${REPS:-3}
COMP=${COMPRESSION:-gzip}
. bench/gatewaylib.sh
"$B/lpbench" gen -n "$N" -o "$dir/lines.log" >/dev/null
# Line i goes to pod i mod PODS: every pod's file holds its share in order.
awk -v pods="$PODS" -v root="$dir/pods" '{
	p = NR % pods
	f = sprintf("%s/shop_web-%d_%08d-aaaa-bbbb-cccc-%012d/app/0.log", root, p, p, p)
	if (!(f in made)) { system("mkdir -p " substr(f, 1, length(f) - 6)); made[f] = 1 }
	print > f
}' "$dir/lines.log"
rm "$dir/lines.log"

for rep in $(seq "$REPS"); do
	for variant in one three affinity; do
		rm -rf "$dir/state" && mkdir -p "$dir/state"
		start_sink "$N"
		pids=("$sink")
		eps=()
		gws=()
		for g in 1 2 3; do
			start_gateway "gateway$g"
			pids+=("$gw")
			gws+=("$gw")
			eps+=("$gaddr")
			[ "$variant" = one ] && break
		done
		affinity=""
		[ "$variant" = affinity ] && affinity="affinity: {resource_attributes: [k8s.pod.uid]}"
		cat >"$dir/logpump.yaml" <<YAML
state_dir: $dir/state
log_level: warn
sources:
  pods: {type: file, include: [$dir/pods/*/*/*.log], start_at: beginning}
processors:
  pod: {type: kubernetes, node_name: bench}
exporters:
  gateway:
    type: otlp_grpc
    endpoints: [$(IFS=,; echo "${eps[*]}")]
    $affinity
    tls: {insecure: true}
    compression: $COMP
pipelines:
  main: {sources: [pods], processors: [pod], exporters: [gateway]}
YAML
		t0=$(date +%s.%N)
		"$B/logpump" run -config "$dir/logpump.yaml" 2>"$dir/logpump.log" &
		lp=$!
		pids+=("$lp")
		until grep -q "unique $N/$N" "$dir/sink.out"; do
			kill -0 "$lp" 2>/dev/null || { echo "logpump exited:" >&2; cat "$dir/logpump.log" >&2; exit 1; }
			sleep 0.05
		done
		wall=$(echo "$(date +%s.%N) - $t0" | bc)
		a=$(cpu "$lp")
		echo "rep $rep variant=$variant endpoints=${#eps[@]} compression=$COMP lines=$N pods=$PODS wall_s=$wall agent_cpu_s=$a agent_cpu_s_per_million=$(echo "scale=3; $a * 1000000 / $N" | bc)"
		kill "$lp" "${gws[@]}" "$sink"
		wait 2>/dev/null || true
		pids=()
	done
done
