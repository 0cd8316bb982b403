#!/usr/bin/env bash
# `make certs`: a TLS certificate for the local demo (envoy/envoy-tls.yaml, `make run-tls`).
#
# Writes, in target/certs/ (git-ignored, like all of target/):
#   ca.pem       the CA certificate that signed cert.pem: give it to clients (curl --cacert, Python ssl)
#   cert.pem     the server certificate: CN localhost; SANs DNS:localhost, IP:127.0.0.1, IP:::1
#   key.pem      its private key, mode 0600 from the moment the file exists
#   ca-key.pem   (openssl path only) the CA's private key, mode 0600, kept so a renewal reuses a CA
#                you may have imported into a browser
#   client.pem, client-key.pem
#                a client certificate from the same CA (curl --cert/--key) for edge.client_certs
#                (docs/client-certificates.md): extendedKeyUsage clientAuth, subject
#                "CN=devgate developer,O=devgate", SANs URI:spiffe://devgate.localhost/developer,
#                DNS:developer.localhost, email:developer@devgate.localhost
#   other-ca.pem, other-client.pem, other-client-key.pem
#                a second, unrelated CA and a client certificate it issued with the same names: a
#                listener trusting ca.pem must refuse it (its CA key is thrown away)
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
    client_valid "$d" client ca.pem || return 1
    client_valid "$d" other-client other-ca.pem || return 1
    ! openssl verify -CAfile "$d/ca.pem" "$d/other-client.pem" >/dev/null 2>&1 ||
        { echo "other-client.pem verifies against ca.pem"; return 1; }
}

# The client certificate $2.pem (key $2-key.pem) in $1: present, key 0600 and matching, a client
# certificate of CA $3 valid for more than a day.
client_valid() {
    local d=$1 name=$2 ca=$3 mode
    for f in "$ca" "$name.pem" "$name-key.pem"; do
        [[ -s $d/$f ]] || { echo "missing $d/$f"; return 1; }
    done
    mode=$(stat -c %a "$d/$name-key.pem")
    [[ $mode == 600 ]] || { echo "$d/$name-key.pem has mode $mode, not 600"; return 1; }
    openssl x509 -in "$d/$name.pem" -noout -checkend $DAY >/dev/null || { echo "$name.pem expires within a day"; return 1; }
    [[ $(openssl pkey -in "$d/$name-key.pem" -pubout 2>/dev/null) == "$(openssl x509 -in "$d/$name.pem" -noout -pubkey)" ]] ||
        { echo "$name-key.pem does not match $name.pem"; return 1; }
    openssl verify -CAfile "$d/$ca" -purpose sslclient "$d/$name.pem" >/dev/null 2>&1 ||
        { echo "$name.pem is not a client certificate of $ca"; return 1; }
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
    # mkcert's client certificates carry its own subject (not "CN=devgate developer").
    mkcert -client -cert-file "$tmp/client.pem" -key-file "$tmp/client-key.pem" \
        spiffe://devgate.localhost/developer developer.localhost developer@devgate.localhost
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
    cat "$tmp/client.cnf" >>"$cnf"
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
    rm -f "$tmp/cert.csr"
    issue_client "$cnf" "$tmp/ca.pem" "$tmp/ca-key.pem" client
    rm -f "$cnf"
    echo "certs: openssl (local CA: $dir/ca.pem)"
}

# The client certificate's extensions (appended to each openssl.cnf used here). URI and email
# names are not constrained by the CA's nameConstraints (only DNS and IP are); the DNS name is
# under localhost, which they permit.
client_cnf() {
    cat >"$tmp/client.cnf" <<'CNF'
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = URI:spiffe://devgate.localhost/developer, DNS:developer.localhost, email:developer@devgate.localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
}

# issue_client CNF CA CA_KEY NAME: $tmp/NAME.pem and $tmp/NAME-key.pem, signed by CA.
issue_client() {
    local cnf=$1 ca=$2 ca_key=$3 name=$4
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$name-key.pem"
    openssl req -new -config "$cnf" -key "$tmp/$name-key.pem" -subj "/O=devgate/CN=devgate developer" \
        -out "$tmp/$name.csr"
    openssl x509 -req -in "$tmp/$name.csr" -CA "$ca" -CAkey "$ca_key" -set_serial "0x$(openssl rand -hex 16)" \
        -sha256 -days 365 -extfile "$cnf" -extensions client -out "$tmp/$name.pem" 2>/dev/null
    rm -f "$tmp/$name.csr"
}

# A second CA, trusted by nothing, and a client certificate from it with the same names as
# client.pem; its CA key is deleted at once.
other_ca() {
    local cnf=$tmp/other.cnf
    { printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n[ca]\n'
      printf 'basicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\n'
      printf 'subjectKeyIdentifier = hash\n'
      cat "$tmp/client.cnf"; } >"$cnf"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/other-ca-key.pem"
    openssl req -x509 -new -config "$cnf" -extensions ca -key "$tmp/other-ca-key.pem" -sha256 -days 3650 \
        -subj "/O=devgate/CN=devgate other CA (trusted by nothing)" -out "$tmp/other-ca.pem"
    issue_client "$cnf" "$tmp/other-ca.pem" "$tmp/other-ca-key.pem" other-client
    rm -f "$tmp/other-ca-key.pem" "$cnf"
}

client_cnf
if [[ $tool == auto ]] && command -v mkcert >/dev/null; then
    with_mkcert
else
    with_openssl
fi
other_ca
rm -f "$tmp/client.cnf"

chmod 600 "$tmp/key.pem" "$tmp/client-key.pem" "$tmp/other-client-key.pem"
chmod 644 "$tmp/ca.pem" "$tmp/cert.pem" "$tmp/client.pem" "$tmp/other-ca.pem" "$tmp/other-client.pem"
why=$(valid "$tmp") || { echo "certs.sh: the new files are unusable: $why" >&2; exit 1; }
# Keys first, certificates last.
if [[ -e $tmp/ca-key.pem ]]; then
    mv -f "$tmp/ca-key.pem" "$dir/ca-key.pem"
else
    rm -f "$dir/ca-key.pem" # a mkcert set: an older openssl CA key has nothing left to sign
fi
for f in key.pem client-key.pem other-client-key.pem ca.pem other-ca.pem cert.pem client.pem other-client.pem; do
    mv -f "$tmp/$f" "$dir/$f"
done
echo "certs: wrote $dir/ca.pem, cert.pem, key.pem, client.pem, client-key.pem, other-ca.pem, other-client.pem, other-client-key.pem (server SANs localhost, 127.0.0.1, ::1; valid until $(openssl x509 -in "$dir/cert.pem" -noout -enddate | cut -d= -f2))"
