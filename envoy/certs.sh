#!/usr/bin/env bash
# `make certs`: a TLS certificate for the local demo (envoy/envoy-tls.yaml, `make run-tls`).
#
# Writes, in target/certs/ (git-ignored, like all of target/):
#   ca.pem       the CA certificate that signed cert.pem: give it to clients (curl --cacert, Python ssl)
#   cert.pem     the server certificate: CN localhost; SANs DNS:localhost, IP:127.0.0.1, IP:::1
#   key.pem      its private key, mode 0600 from the moment the file exists
#   ca-key.pem   (openssl path only) the CA's private key, mode 0600, kept so a renewal reuses a CA
#                you may have imported into a browser
#
# With `mkcert` installed (Debian: apt-get install mkcert) the certificate comes from mkcert's local
# CA ($(mkcert -CAROOT)/rootCA.pem, copied to ca.pem); run `mkcert -install` once yourself to make
# browsers trust it (this script never touches trust stores). Without mkcert: a self-signed CA and a
# leaf made with openssl. The openssl CA is name-constrained to localhost, 127.0.0.0/8 and ::1, so
# even if you import it into a browser it cannot vouch for any other name.
#
# Idempotent: does nothing when the files exist, key.pem is 0600, the key matches the certificate,
# the certificate verifies against ca.pem for localhost, 127.0.0.1 and ::1, and neither expires
# within a day. Otherwise everything is generated in a private temporary directory (mode 0700,
# umask 077: keys are never readable by anyone else, not even for an instant) and moved into place.
#
# Usage: envoy/certs.sh [--force] [--openssl]
#   --force     regenerate even when the files are valid
#   --openssl   use openssl even when mkcert is installed
# Environment: DEVGATE_CERTS_DIR (default: <repo>/target/certs)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${DEVGATE_CERTS_DIR:-$repo/target/certs}
force=0
tool=auto
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        --openssl) tool=openssl ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "certs.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

command -v openssl >/dev/null || { echo "certs.sh: openssl is required (apt-get install -y openssl)" >&2; exit 1; }

DAY=86400

# Everything that makes the files in $1 usable; prints why not, on failure.
valid() {
    local d=$1 f mode
    for f in ca.pem cert.pem key.pem; do
        [[ -s $d/$f ]] || { echo "missing $d/$f"; return 1; }
    done
    mode=$(stat -c %a "$d/key.pem")
    [[ $mode == 600 ]] || { echo "$d/key.pem has mode $mode, not 600 (it may have been read: new key)"; return 1; }
    openssl x509 -in "$d/ca.pem" -noout -checkend $DAY >/dev/null || { echo "ca.pem expires within a day"; return 1; }
    openssl x509 -in "$d/cert.pem" -noout -checkend $DAY >/dev/null || { echo "cert.pem expires within a day"; return 1; }
    [[ $(openssl pkey -in "$d/key.pem" -pubout 2>/dev/null) == "$(openssl x509 -in "$d/cert.pem" -noout -pubkey)" ]] ||
        { echo "key.pem does not match cert.pem"; return 1; }
    openssl verify -CAfile "$d/ca.pem" -purpose sslserver -verify_hostname localhost "$d/cert.pem" >/dev/null 2>&1 &&
        openssl verify -CAfile "$d/ca.pem" -purpose sslserver -verify_ip 127.0.0.1 "$d/cert.pem" >/dev/null 2>&1 &&
        openssl verify -CAfile "$d/ca.pem" -purpose sslserver -verify_ip ::1 "$d/cert.pem" >/dev/null 2>&1 ||
        { echo "cert.pem does not verify against ca.pem for localhost, 127.0.0.1 and ::1"; return 1; }
}

if [[ $force == 0 ]] && why=$(valid "$dir"); then
    echo "certs: $dir is up to date (cert.pem valid until $(openssl x509 -in "$dir/cert.pem" -noout -enddate | cut -d= -f2))"
    exit 0
fi
[[ $force == 1 ]] && why="--force"
echo "certs: generating in $dir ($why)"

umask 077 # before anything is created: a new target/certs/ is 0700, new keys 0600
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

with_mkcert() {
    local caroot
    caroot=$(mkcert -CAROOT)
    # mkcert creates its CA on first use; no -install (that changes trust stores, your call).
    mkcert -cert-file "$tmp/cert.pem" -key-file "$tmp/key.pem" localhost 127.0.0.1 ::1
    cp "$caroot/rootCA.pem" "$tmp/ca.pem"
    echo "certs: mkcert (CA: $caroot/rootCA.pem; run 'mkcert -install' once to make browsers trust it)"
}

with_openssl() {
    local cnf=$tmp/openssl.cnf serial
    cat >"$cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
# Even if you import this CA into a browser, it can vouch for nothing but these names.
nameConstraints = critical, permitted;DNS:localhost, permitted;IP:127.0.0.0/255.0.0.0, permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
    # Reuse the existing CA if it is ours, sound and not expiring within 30 days (a browser may
    # trust it already).
    if [[ -s $dir/ca-key.pem && -s $dir/ca.pem && $(stat -c %a "$dir/ca-key.pem") == 600 ]] &&
        openssl x509 -in "$dir/ca.pem" -noout -checkend $((30 * DAY)) >/dev/null &&
        [[ $(openssl pkey -in "$dir/ca-key.pem" -pubout 2>/dev/null) == "$(openssl x509 -in "$dir/ca.pem" -noout -pubkey)" ]]; then
        cp -p "$dir/ca-key.pem" "$tmp/ca-key.pem"
        cp "$dir/ca.pem" "$tmp/ca.pem"
        echo "certs: reusing the CA $dir/ca.pem"
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ca-key.pem"
        openssl req -x509 -new -config "$cnf" -extensions ca -key "$tmp/ca-key.pem" -sha256 -days 3650 \
            -subj "/O=devgate/CN=devgate local development CA ($(hostname -s 2>/dev/null || echo localhost), $(date -u +%Y-%m-%d))" \
            -out "$tmp/ca.pem"
    fi
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/key.pem"
    openssl req -new -config "$cnf" -key "$tmp/key.pem" -subj "/O=devgate/CN=localhost" -out "$tmp/cert.csr"
    serial=0x$(openssl rand -hex 16)
    openssl x509 -req -in "$tmp/cert.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -set_serial "$serial" \
        -sha256 -days 365 -extfile "$cnf" -extensions leaf -out "$tmp/cert.pem" 2>/dev/null
    rm -f "$tmp/cert.csr" "$cnf"
    echo "certs: openssl (local CA: $dir/ca.pem)"
}

if [[ $tool == auto ]] && command -v mkcert >/dev/null; then
    with_mkcert
else
    with_openssl
fi

chmod 600 "$tmp/key.pem"
chmod 644 "$tmp/ca.pem" "$tmp/cert.pem"
why=$(valid "$tmp") || { echo "certs.sh: the new files are unusable: $why" >&2; exit 1; }
# Keys first, certificates last.
if [[ -e $tmp/ca-key.pem ]]; then
    mv -f "$tmp/ca-key.pem" "$dir/ca-key.pem"
else
    rm -f "$dir/ca-key.pem" # a mkcert set: an older openssl CA key has nothing left to sign
fi
for f in key.pem ca.pem cert.pem; do
    mv -f "$tmp/$f" "$dir/$f"
done
echo "certs: wrote $dir/ca.pem, cert.pem, key.pem (SANs localhost, 127.0.0.1, ::1; valid until $(openssl x509 -in "$dir/cert.pem" -noout -enddate | cut -d= -f2))"
