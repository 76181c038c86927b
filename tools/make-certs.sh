#!/usr/bin/env bash
# Makes a private certificate authority and a server certificate signed by it, for the bridge's
# HTTPS/WSS and the broker's MQTT over TLS: enough for tests and a first secure setup.
#
#   tools/make-certs.sh OUT_DIR [NAME ...]
#
# Writes OUT_DIR/ca.pem (give it to clients: curl --cacert, sensor-sim, browsers), ca.key,
# server.pem and server.key. The server certificate names localhost, 127.0.0.1 and ::1, plus every
# NAME given (a DNS name, or an IP address). An existing CA in OUT_DIR is kept and reused, so
# running it again renews the server certificate without invalidating what clients trust.
# For a real deployment prefer certificates from your own PKI or ACME; keep *.key private.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 OUT_DIR [NAME ...]" >&2
  exit 2
fi
out=$1
shift
mkdir -p "$out"
umask 077

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
done

if [[ ! -f $out/ca.pem || ! -f $out/ca.key ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=telemetry bridge test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
fi

openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=${1:-localhost}" -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
  -days 825 -out "$out/server.pem" \
  -extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san") \
  2>/dev/null
rm -f "$out/server.csr" "$out/ca.srl"
chmod 644 "$out/ca.pem" "$out/server.pem"
echo "make-certs: CA $out/ca.pem, server certificate $out/server.pem for $san"
