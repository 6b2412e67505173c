#!/usr/bin/env bash
# Kubernetes API tests for logpump: builds (once, cached) a kube-apiserver
# and a kubectl of the release the manifests target, installs etcd when
# missing, and runs the TestK8s* end-to-end tests against them (server-side
# dry-run of every manifest, the shipped RBAC role, pod metadata end to end).
#
#   bash .ci/k8s.sh                 # build if needed, then test
#   bash .ci/k8s.sh build           # only build the binaries
#   LOGPUMP_CI_CACHE=/tmp/c bash .ci/k8s.sh
#
# The binaries are cached in $LOGPUMP_CI_CACHE/k8s-$K8S_VERSION (default
# /var/cache/logpump-ci): a cold build takes minutes, a warm run none.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive
K8S_VERSION=v1.37.2
BIN=${LOGPUMP_CI_CACHE:-/var/cache/logpump-ci}/k8s-$K8S_VERSION

# etcd 3.4 from Debian is what the API server stores its objects in.
if ! command -v etcd >/dev/null; then
	t=$(date +%s)
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
	echo "k8s: installed etcd-server in $(($(date +%s) - t))s"
fi

# test/k8s/apiserver is a module requiring k8s.io/kubernetes at the release
# (with its staging modules replaced by their published versions); kubectl
# comes from the same module (Debian's is too old to talk to this server).
# Without gitVersion kubectl cannot parse the server's version.
build() {
	local cmd=$1 t ver
	[ -x "$BIN/$cmd" ] && { echo "k8s: $BIN/$cmd cached"; return; }
	t=$(date +%s)
	ver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
	ver="$ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
	ver="$ver -X k8s.io/component-base/version.gitTreeState=clean"
	mkdir -p "$BIN"
	(cd "$ROOT/test/k8s/apiserver" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ver" \
		-o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
	mv "$BIN/$cmd.tmp" "$BIN/$cmd"
	echo "k8s: built $cmd in $(($(date +%s) - t))s"
}
t=$(date +%s)
build kube-apiserver
build kubectl
echo "k8s: binaries ready in $(($(date +%s) - t))s ($BIN)"
# The Helm chart's renderings are tested too, when there is a chart; helm
# is not in Debian (2-3 min to build; the same version and place as .ci/ops.sh).
if [ -f deploy/helm/logpump/Chart.yaml ] && [ ! -x "${LOGPUMP_CI_CACHE:-/var/cache/logpump-ci}/bin/helm" ]; then
	t=$(date +%s)
	(cd / && GOBIN=${LOGPUMP_CI_CACHE:-/var/cache/logpump-ci}/bin GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@v3.21.4)
	echo "k8s: built helm in $(($(date +%s) - t))s"
fi
[ "${1:-}" = build ] && exit 0

# The tests: every TestK8s* of test/e2e (the harness package kapi with
# them). LOGPUMP_REQUIRE_K8S=1 makes a missing binary a failure, not a skip.
t=$(date +%s)
set -o pipefail
(cd test/e2e && LOGPUMP_REQUIRE_K8S=1 LOGPUMP_K8S_BIN=$BIN go test -count=1 -timeout 20m -v -run '^TestK8s' ./... 2>&1) |
	tee k8s-test.log | grep -E '^(ok|FAIL|--- FAIL|--- SKIP|panic:)|^E2E ' ||
	{
		grep -B5 -A60 -E '^\s*--- FAIL|^panic:' k8s-test.log | head -400
		exit 1
	}
echo "k8s: tests took $(($(date +%s) - t))s"
