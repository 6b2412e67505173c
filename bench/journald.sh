#!/usr/bin/env bash
# bench/journald.sh: logpump's journald source against the OpenTelemetry
# Collector's journald receiver, reading the same journal from the
# beginning into the same counting sink, in the same run. Writes a journal
# of N entries once (lpbench gen -format journal | systemd-journal-remote,
# kept in DATA_DIR/journal-N), then runs lpbench's journald scenario: REPS
# repetitions, the agents alternating, each until all N entries arrived.
# CPU and memory include the journalctl each agent runs as its child.
# Results go to bench/results/<time>/ as bench/run.sh's do.
#
#   bench/journald.sh                       # N=1000000 REPS=3
#   N=200000 REPS=1 bench/journald.sh       # a quick look
#   N=2000 REPS=1 bench/journald.sh         # smoke run: the whole path in seconds (once built)
#   READER=native bench/journald.sh         # logpump's journald source with reader: native
#   FORMATS=1 bench/journald.sh             # also journalctl's CPU for -o json against -o export
#
# Other knobs: JOURNAL_PRIORITY (default info, the Collector receiver's
# default, given to both agents), AGENTS, PROTOCOL, DATA_DIR, and the rest
# of `bench/run.sh -help`. Needs journalctl and systemd-journal-remote
# (apt-get install systemd-journal-remote).
set -euo pipefail
cd "$(dirname "$0")/.."
export N=${N:-1000000} REPS=${REPS:-3}
remote=/lib/systemd/systemd-journal-remote
for f in "$remote" "$(command -v journalctl || echo journalctl)"; do
	[ -x "$f" ] || { echo "bench/journald.sh: $f missing (apt-get install systemd-journal-remote)" >&2; exit 1; }
done
data=${DATA_DIR:-/tmp/logpump-bench/data}
journal=$data/journal-$N
mkdir -p bench/.build "$data"
(cd bench && go build -o .build/lpbench ./cmd/lpbench)
if [ ! -e "$journal.done" ]; then
	echo "writing a journal of $N entries to $journal" >&2
	rm -rf "$journal" && mkdir -p "$journal"
	bench/.build/lpbench gen -format journal -n "$N" -o - | "$remote" --output="$journal/bench.journal" -
	touch "$journal.done"
fi
du -sh "$journal" >&2

if [ -n "${FORMATS:-}" ]; then
	# What journalctl alone costs to print the journal, per output format:
	# logpump's journalctl reader uses json; export is the other
	# machine-readable format.
	for fmt in json export; do
		for rep in $(seq "$REPS"); do
			/usr/bin/time -f "journalctl -o $fmt: %U s user %S s system %e s wall, max RSS %M KiB ($N entries)" \
				journalctl --directory="$journal" --output="$fmt" --all --no-pager --quiet >/dev/null
		done
	done
fi

SCENARIOS=journald JOURNAL_DIR=$journal exec bench/run.sh "$@"
