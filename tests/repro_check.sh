#!/usr/bin/env bash
# `make repro-check`: shows that devgate.wasm, and so the OCI image digest the shipped manifests pin,
# depends only on the committed source and the toolchain rust-toolchain.toml pins, not on where the
# checkout is or which CARGO_HOME the build uses.
#
# It clones the committed HEAD twice, into two directories of different depth and name, and builds
# each with `make build`:
#   A: <work>/a/devgate                with this shell's CARGO_HOME (default ~/.cargo)
#   B: <work>/b/elsewhere/devgate      with CARGO_HOME=<work>/b/cargo-home, a copy of A's
#                                       registry (so nothing is downloaded twice)
# then fails unless both modules have the same sha256, both images the same manifest digest
# (envoy/istio/oci_image.py), that digest is the one the clone's envoy/istio/wasmplugin.yaml pins,
# and neither module contains its checkout's, its CARGO_HOME's or the toolchain's absolute path.
# Both builds use this machine's rustup toolchain; that the module does not change when it has the
# rust-src component (rustc then names the standard library's files by their real path) was checked
# by hand, with a second RUSTUP_HOME that had it.
#
# Each build is a cold release build of the module (a few minutes on 2 cores), so the check is not
# part of `make test`. Uncommitted changes are not in the clones: commit first to check them.
#
#   bash tests/repro_check.sh                 # in a fresh temporary directory, removed on success
#   REPRO_DIR=/tmp/r bash tests/repro_check.sh  # there (must not exist yet), kept
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

keep=1
if [[ -n ${REPRO_DIR:-} ]]; then
    work=$REPRO_DIR
    if [[ -e $work ]]; then
        echo "repro-check: $work exists; name a new directory" >&2
        exit 1
    fi
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/devgate-repro.XXXXXX")
    keep=0
fi
work=$(cd "$work" && pwd -P)

home_a=${CARGO_HOME:-$HOME/.cargo}
home_b=$work/b/cargo-home
src_a=$work/a/devgate
src_b=$work/b/elsewhere/devgate
# Each build in its own clone's target/, whatever the caller's environment says.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR

rev=$(git rev-parse HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
    echo "repro-check: uncommitted changes are not checked; building the committed $rev"
fi

clone() {
    git clone -q --no-checkout "$root" "$1"
    git -C "$1" checkout -q --detach "$rev"
}

wasm_of() { echo "$1/target/wasm32-wasip1/release/devgate.wasm"; }

build() { # name, checkout, CARGO_HOME
    local start
    start=$(date +%s)
    echo "== build $1: $2 (CARGO_HOME=$3)"
    CARGO_HOME=$3 make -C "$2" --no-print-directory build
    echo "   $1 built in $(( $(date +%s) - start )) s"
}

digest_of() { # module, output directory
    python3 "$root/envoy/istio/oci_image.py" --wasm "$1" --out "$2" --json \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["manifest_digest"].removeprefix("sha256:"))'
}

leaks() { # module, directories no path in it may start with (a component, not a substring:
    # a checkout at /src must not match /cargo/registry/src/)
    python3 - "$@" <<'PY'
import re, sys
module, dirs = open(sys.argv[1], "rb").read(), sys.argv[2:]
found = [d for d in dirs if re.search(rb"(?<![A-Za-z0-9_.-])" + re.escape(d.encode()) + rb"/", module)]
for d in found:
    print(f"repro-check: {sys.argv[1]} names files under the machine path {d}", file=sys.stderr)
sys.exit(1 if found else 0)
PY
}

echo "== cloning $rev into $src_a and $src_b"
mkdir -p "$work/a" "$work/b/elsewhere"
clone "$src_a"
clone "$src_b"

build A "$src_a" "$home_a"

# B's CARGO_HOME: A's registry (index cache, crate archives, unpacked sources) and cargo's own
# configuration, copied to another path. Never credentials: the build downloads nothing.
mkdir -p "$home_b"
for entry in registry git config.toml config; do
    if [[ -e $home_a/$entry ]]; then
        cp -a "$home_a/$entry" "$home_b/"
    fi
done
build B "$src_b" "$home_b"

wasm_a=$(wasm_of "$src_a")
wasm_b=$(wasm_of "$src_b")
sum_a=$(sha256sum "$wasm_a" | cut -d' ' -f1)
sum_b=$(sha256sum "$wasm_b" | cut -d' ' -f1)
image_a=$(digest_of "$wasm_a" "$work/a/oci")
image_b=$(digest_of "$wasm_b" "$work/b/oci")
pinned=$(sed -n 's/^[[:space:]]*sha256:[[:space:]]*\([0-9a-f]\{64\}\).*/\1/p' "$src_a/envoy/istio/wasmplugin.yaml")

echo
echo "devgate.wasm sha256   A $sum_a"
echo "                      B $sum_b"
echo "image manifest digest A sha256:$image_a"
echo "                      B sha256:$image_b"
echo "pinned (envoy/istio/wasmplugin.yaml at $rev): sha256:$pinned"

failed=0
[[ $sum_a == "$sum_b" ]] || { echo "repro-check: the two modules differ" >&2; failed=1; }
[[ $image_a == "$image_b" ]] || { echo "repro-check: the two image digests differ" >&2; failed=1; }
[[ $image_a == "$pinned" ]] || {
    echo "repro-check: the pinned digest is not this build's: run \`make pin-image\` and commit" >&2
    failed=1
}
sysroot=$(cd "$src_a" && rustc --print sysroot)
leaks "$wasm_a" "$src_a" "$home_a" "$root" "$sysroot" || failed=1
leaks "$wasm_b" "$src_b" "$home_b" "$root" "$sysroot" || failed=1

if ((failed)); then
    echo "repro-check: FAILED; both checkouts kept in $work" >&2
    exit 1
fi
echo "repro-check: the same module and image from two checkouts and two CARGO_HOMEs"
if ((keep)); then
    echo "   (kept in $work)"
else
    rm -rf "$work"
fi
