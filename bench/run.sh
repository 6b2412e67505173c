#!/usr/bin/env bash
# bench/run.sh: build logpump, the peer OpenTelemetry Collector (once, from
# the Go module proxy) and the harness, then run the end-to-end benchmark.
# Knobs are environment variables (N, REPS, SCENARIOS, AGENTS, PROTOCOL, ...;
# `bench/run.sh -help` lists them all); extra arguments go to `lpbench run`.
#
#   bench/run.sh                                  # default: N=2000000 REPS=3, 12-14 min
#   N=200000 REPS=1 SCENARIOS="plain json" bench/run.sh
#   SCENARIOS=rss bench/run.sh                    # 1 GiB vs 16 MiB file, on demand
set -euo pipefail
cd "$(dirname "$0")/.."
build=bench/.build
mkdir -p "$build"

if [ -z "${LOGPUMP:-}" ]; then
	echo "building logpump" >&2
	# As the release binaries are built (.ci/ops.sh; see the Makefile).
	CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -o "$build/logpump" ./cmd/agent
	export LOGPUMP="$build/logpump"
fi

if [ -z "${OTELCOL:-}" ]; then
	peer="$build/otelcol-peer"
	# Static, as the Collector's own release binaries are built, and as
	# logpump is above. A change of these flags rebuilds it.
	peerflags="CGO_ENABLED=0 -trimpath -ldflags=-s -w"
	if [ ! -x "$peer" ] || [ bench/peer/main.go -nt "$peer" ] || [ bench/peer/go.mod -nt "$peer" ] ||
		[ "$(cat "$build/otelcol-peer.flags" 2>/dev/null)" != "$peerflags" ]; then
		echo "building the peer Collector (takes a few minutes the first time)" >&2
		(cd bench/peer && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o ../.build/otelcol-peer .) &&
			echo "$peerflags" >"$build/otelcol-peer.flags"
	fi
	export OTELCOL="$peer"
fi

(cd bench && go build -o .build/lpbench ./cmd/lpbench)
exec "$build/lpbench" run "$@"
