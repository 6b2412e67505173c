# bench/gatewaylib.sh: sourced by bench/gateway.sh and bench/affinity.sh.
# Needs B (bench/.build) and COMP (gzip or none); checks the binaries, makes
# the scratch directory dir and kills what was started (pids) on exit.

for f in logpump otelcol-peer lpbench; do
	[ -x "$B/$f" ] || { echo "missing $B/$f: run bench/run.sh first" >&2; exit 1; }
done
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$1/stat"; }
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start_sink N: starts lpbench's counting sink waiting for N lines; sets
# sink (its pid) and saddr (its OTLP/gRPC address).
start_sink() {
	rm -f "$dir/sink.out"
	"$B/lpbench" sink -n "$1" >"$dir/sink.out" 2>&1 &
	sink=$!
	until grep -q "OTLP/gRPC" "$dir/sink.out" 2>/dev/null; do sleep 0.05; done
	saddr=$(head -1 "$dir/sink.out" | awk '{print $2}')
}

# start_gateway NAME: starts the peer Collector as a gateway (otlp receiver
# -> batch -> otlp exporter to $saddr); sets gw (its pid) and gaddr (the
# address of its OTLP/gRPC receiver).
start_gateway() {
	local gport
	gport=$(port)
	rm -f "$dir/$1.log"
	cat >"$dir/$1.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:$gport}
processors:
  batch: {}
exporters:
  otlp:
    endpoint: $saddr
    tls: {insecure: true}
    compression: $COMP
service:
  telemetry: {metrics: {level: none}}
  pipelines:
    logs: {receivers: [otlp], processors: [batch], exporters: [otlp]}
YAML
	"$B/otelcol-peer" --config "$dir/$1.yaml" >"$dir/$1.log" 2>&1 &
	gw=$!
	until grep -q "Everything is ready" "$dir/$1.log" 2>/dev/null; do sleep 0.05; done
	gaddr=127.0.0.1:$gport
}
