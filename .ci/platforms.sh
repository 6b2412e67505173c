#!/usr/bin/env bash
# Platform checks for logpump beyond linux/amd64.
#
#   bash .ci/platforms.sh cross   vet and build for windows/amd64, darwin/amd64,
#                                 darwin/arm64 and linux/arm64 (every package
#                                 and test of the agent's module); the tailer's
#                                 tests with the portable (fsnotify) watcher
#                                 the non-Linux builds use
#   bash .ci/platforms.sh zip     the Windows release archive (logpump-VERSION-windows-amd64.zip)
#   bash .ci/platforms.sh qemu    the agent's unit tests as linux/arm64 binaries under qemu-user
#   bash .ci/platforms.sh wine    the Windows test binaries of the packages Wine can run
#
# The benchmark harness (bench/) and the end-to-end suite (test/e2e) are
# modules of their own and Linux-only (/proc figures, logrotate, journald):
# they are not cross-built.
#
# Artifacts and logs go to $OPS_OUT (default /tmp/logpump-ops)/platforms.
# All four run in CI (.ci/ops.sh); qemu and wine are also `make qemu-test`
# and `make wine-test`. qemu and wine install qemu-user-static, wine64 and
# mingw-w64's gcc with apt-get when missing, print pass/skip/fail counts per
# package and fail on any failed test.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OPS_OUT:-/tmp/logpump-ops}/platforms
VERSION=${LOGPUMP_VERSION:-0.1.0}
TARGETS="windows/amd64 darwin/amd64 darwin/arm64 linux/arm64"
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$OUT"
cd "$ROOT"

apt_need() { # apt_need COMMAND PACKAGE...
	local cmd=$1
	shift
	command -v "$cmd" >/dev/null || [ -x "$cmd" ] && return 0
	apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

cross() {
	local t os arch ext
	for t in $TARGETS; do
		os=${t%/*} arch=${t#*/} ext=
		[ "$os" = windows ] && ext=.exe
		echo "== $t: go vet ./..."
		GOOS=$os GOARCH=$arch go vet ./...
		echo "== $t: build"
		GOOS=$os GOARCH=$arch CGO_ENABLED=0 go build -trimpath -tags grpcnotrace \
			-ldflags "-s -w -X main.version=$VERSION" -o "$OUT/logpump-$os-$arch$ext" ./cmd/agent
	done
	echo "== tailer tests with the portable watcher (-tags portablewatch)"
	go vet -tags portablewatch ./tailer/
	go test -count=1 -short -tags portablewatch ./tailer/
}

# zip: the Windows release archive: logpump.exe, an example configuration
# and the README's Windows section as text.
zip_windows() {
	local dir="$OUT/zip/logpump-$VERSION-windows-amd64" archive="$OUT/logpump-$VERSION-windows-amd64.zip"
	apt_need zip zip
	apt_need file file
	rm -rf "$OUT/zip" "$archive" && mkdir -p "$dir"
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 go build -trimpath -tags grpcnotrace \
		-ldflags "-s -w -X main.version=$VERSION" -o "$dir/logpump.exe" ./cmd/agent
	cp packaging/windows/config.yaml packaging/windows/README.txt "$dir/"
	(cd "$OUT/zip" && TZ=UTC find . -exec touch -d @0 {} + && zip -qrX "$archive" "logpump-$VERSION-windows-amd64")
	unzip -l "$archive"
	# What users rely on: the executable is a Windows amd64 PE file (the
	# example configuration is validated by logpump.exe under Wine: its
	# C:\ patterns are not absolute paths on Linux).
	unzip -p "$archive" "logpump-$VERSION-windows-amd64/logpump.exe" >"$OUT/zip/check.exe"
	file "$OUT/zip/check.exe" | grep -q 'PE32+ executable.*x86-64' ||
		{ file "$OUT/zip/check.exe"; return 1; }
}

# apt_need_timed COMMAND PACKAGE...: apt_need, saying what it installed and
# how long that took (CI starts without Wine, mingw-w64 or qemu-user).
apt_need_timed() {
	local cmd=$1 t0
	command -v "$cmd" >/dev/null || [ -x "$cmd" ] && return 0
	t0=$(date +%s)
	apt_need "$@" || return 1
	shift
	echo "installed $* in $(($(date +%s) - t0))s"
}

# count_tests LOG: the per-package counts of a test2json LOG (test/testcount),
# failing on any failed test or package.
count_tests() {
	local module
	module=$(go list -m)
	go build -o "$OUT/testcount" ./test/testcount && "$OUT/testcount" -skips <"$1" | sed "s|^$module/||"
}

# The agent's module (not the end-to-end suite or the benchmark harness,
# modules of their own) as linux/arm64 test binaries run by qemu-user through
# go test -exec, without binfmt_misc (registering it changes the host
# kernel's state for everyone). -short leaves out TestManyFiles (1,000
# files) and TestRealInotifyLimits (it re-executes the test binary, which
# the kernel cannot without binfmt_misc). Tests that cannot pass under
# qemu-user skip themselves (internal/testenv), saying why.
qemu() {
	apt_need_timed qemu-aarch64-static qemu-user-static || return 1
	local log="$OUT/qemu-arm64.json" rc=0 t0
	t0=$(date +%s)
	GOARCH=arm64 go test -json -count=1 -short -timeout 20m -exec qemu-aarch64-static ./... >"$log" 2>&1 || rc=1
	echo "== linux/arm64 under qemu-user ($(($(date +%s) - t0))s, build included)"
	count_tests "$log" || rc=1
	return $rc
}

# Wine: Go 1.26 programs need bcryptprimitives.dll (ProcessPrng), which
# Debian's Wine 8 lacks; test/wine holds a stand-in, built with mingw-w64 and
# put in the prefix's system32 (Go loads it from there only). os.RemoveAll
# fails under Wine ("Invalid function"): the tests' temporary directories
# come from testenv.TempDir, which removes them file by file there. Tests
# that cannot pass under Wine skip themselves (internal/testenv), saying
# why; any failure is a failure.
WINE=/usr/lib/wine/wine64
WINE_PACKAGES="./checkpoint ./config ./event ./parse ./filter ./route ./transform ./enrich ./internal/testenv ./cmd/agent ./tailer"

wine() {
	local prefix="$OUT/wine-prefix" pkg name log="$OUT/wine.json" rc=0 t0
	apt_need_timed "$WINE" wine64 || return 1
	apt_need_timed x86_64-w64-mingw32-gcc gcc-mingw-w64-x86-64-win32 || return 1
	export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
	t0=$(date +%s)
	if [ ! -f "$prefix/drive_c/windows/system32/bcryptprimitives.dll" ]; then
		"$WINE" wineboot --init >/dev/null 2>&1 || true
		x86_64-w64-mingw32-gcc -O2 -shared -o "$prefix/drive_c/windows/system32/bcryptprimitives.dll" \
			test/wine/bcryptprimitives.c test/wine/bcryptprimitives.def -ladvapi32
	fi
	# One build of every test binary (go builds them in parallel).
	rm -rf "$OUT/wine-bin" && mkdir -p "$OUT/wine-bin"
	GOOS=windows GOARCH=amd64 go test -c -o "$OUT/wine-bin/" $WINE_PACKAGES || return 1
	: >"$log"
	for pkg in $WINE_PACKAGES; do
		name=$(basename "$pkg")
		[ -f "$OUT/wine-bin/$name.test.exe" ] || continue # no tests
		(cd "$ROOT/$pkg" && timeout 600 "$WINE" "$OUT/wine-bin/$name.test.exe" -test.short -test.v=test2json \
			-test.timeout=550s 2>&1 | go tool test2json -p "${pkg#./}") >>"$log" || true
	done
	echo "== Windows test binaries under Wine ($(($(date +%s) - t0))s, build included)"
	count_tests "$log" || rc=1
	echo "== logpump.exe validate and version under Wine"
	GOOS=windows GOARCH=amd64 go build -o "$OUT/logpump.exe" ./cmd/agent
	"$WINE" "$OUT/logpump.exe" validate -config packaging/windows/config.yaml || rc=1
	"$WINE" "$OUT/logpump.exe" version || rc=1
	echo "== logpump.exe as a service under Wine's service control manager"
	wine_service || rc=1
	/usr/lib/wine/wineserver -k 2>/dev/null || true
	echo "== Wine: $(($(date +%s) - t0))s"
	return $rc
}

# wine_service: service install, start, lines appended while it runs, stop
# (drain and checkpoint), start again, more lines, stop, uninstall. Every
# line is counted by its sequence number in the console output the agent's
# log file holds: none may be missing; duplicates are reported.
wine_service() {
	local dir="$OUT/service" exe="$OUT/logpump.exe" i n want=300 missing dups
	rm -rf "$dir" && mkdir -p "$dir/logs"
	ln -sfn "$dir" "$WINEPREFIX/drive_c/lpsvc"
	cat >"$dir/config.yaml" <<-'YAML'
		state_dir: C:\lpsvc\state
		sources:
		  app: {type: file, include: ['C:\lpsvc\logs\*.log'], start_at: beginning}
		exporters:
		  out: {type: console}
		pipelines:
		  app: {sources: [app], exporters: [out]}
	YAML
	for i in $(seq 1 100); do echo "seq=$i"; done >"$dir/logs/app.log"
	"$WINE" "$exe" service uninstall >/dev/null 2>&1 || true
	"$WINE" "$exe" service install -config 'C:\lpsvc\config.yaml' -log 'C:\lpsvc\agent.log' &&
		"$WINE" "$exe" service start || return 1
	sleep 3
	for i in $(seq 101 200); do echo "seq=$i"; done >>"$dir/logs/app.log"
	sleep 3
	"$WINE" "$exe" service stop || return 1
	[ -s "$dir/state/checkpoints.bin" ] || { echo "no checkpoint after service stop"; return 1; }
	grep -q '"logpump stopped".*"clean":true' "$dir/agent.log" || { echo "no clean stop logged"; return 1; }
	"$WINE" "$exe" service start || return 1
	for i in $(seq 201 $want); do echo "seq=$i"; done >>"$dir/logs/app.log"
	sleep 4
	"$WINE" "$exe" service stop && "$WINE" "$exe" service uninstall || return 1
	n=$(grep -oE 'seq=[0-9]+' "$dir/agent.log" | sort -u | wc -l)
	dups=$(($(grep -cE 'seq=[0-9]+' "$dir/agent.log") - n))
	missing=$((want - n))
	echo "service under Wine: $want lines written, $n delivered, $missing missing, $dups duplicates"
	[ "$missing" -eq 0 ]
}

case ${1:-} in
cross) cross ;;
zip) zip_windows ;;
qemu) qemu ;;
wine) wine ;;
*)
	echo "usage: $0 cross|zip|qemu|wine" >&2
	exit 2
	;;
esac
