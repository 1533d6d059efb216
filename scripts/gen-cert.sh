#!/usr/bin/env bash
# gen-cert.sh - makes a self-signed TLS certificate for local use: DIR/cert.pem and DIR/key.pem for
# CN=localhost, valid for the names localhost, 127.0.0.1 and ::1 (ECDSA P-256, SHA-256).
#
# Usage: scripts/gen-cert.sh [DIR]      DIR defaults to conf/examples/tls (what conf/examples/tls.yaml reads)
# Environment: DAYS (365) validity in days.
# Existing files in DIR are replaced. Clients trust it with e.g. `curl --cacert DIR/cert.pem`.
set -euo pipefail

die() { echo "gen-cert.sh: $*" >&2; exit 1; }

case ${1:-} in -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0;; esac
(($# <= 1)) || die "usage: scripts/gen-cert.sh [DIR]"
dir=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/conf/examples/tls}
days=${DAYS:-365}
[[ $days =~ ^[1-9][0-9]*$ ]] || die "DAYS must be a positive number of days, got '$days'"
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.gen-cert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Our own request config, so the system openssl.cnf (which would mark the certificate as a CA) plays no part.
cat >"$tmp/req.cnf" <<'CNF'
[req]
prompt = no
distinguished_name = dn
x509_extensions = ext

[dn]
CN = localhost

[ext]
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

umask 077   # the private key is readable by its owner only
openssl req -x509 -config "$tmp/req.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -days "$days" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/openssl.log" \
    || { cat "$tmp/openssl.log" >&2; die "openssl failed"; }
chmod 644 "$tmp/cert.pem"
mv -f "$tmp/key.pem" "$dir/key.pem"
mv -f "$tmp/cert.pem" "$dir/cert.pem"

echo "wrote $dir/cert.pem and $dir/key.pem (self-signed, CN=localhost, SAN localhost 127.0.0.1 ::1, $days days)"
echo "expires: $(openssl x509 -in "$dir/cert.pem" -noout -enddate | sed 's/^notAfter=//')"
