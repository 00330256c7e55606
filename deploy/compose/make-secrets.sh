#!/bin/sh
# Creates the secrets deploy/compose needs, once, in secrets/ (or the directory given): the token
# secret and the cluster secret every sportello node shares, coturn's TURN secret, Grafana's
# admin password, and (with openssl) a self-signed TLS certificate in tls/ for a first try.
# Existing files are kept. Each file is mode 0640, group 10001: the sportello image's user, and
# coturn and Grafana (run with that group in docker-compose.yml), read them; run it as root, or
# chgrp them yourself. Nothing here is ever committed (secrets/.gitignore, tls/.gitignore).
#
#   ./make-secrets.sh [SECRETS_DIR [TLS_DIR]] [--host NAME]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
secrets="$here/secrets"
tls="$here/tls"
host="${SPORTELLO_PUBLIC_HOST:-localhost}"
positional=0
while [ $# -gt 0 ]; do
    case "$1" in
        --host) host="$2"; shift 2 ;;
        *)
            positional=$((positional + 1))
            if [ "$positional" = 1 ]; then secrets="$1"; else tls="$1"; fi
            shift ;;
    esac
done
mkdir -p "$secrets" "$tls"
umask 027

# 32 random bytes as 64 hex digits: the servers want at least 32 bytes of secret.
random_hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

share() {
    chmod 0640 "$1"
    chgrp 10001 "$1" 2>/dev/null || echo "make-secrets: could not give $1 to group 10001 (run as root, or chgrp it)" >&2
}

for name in token-secret cluster-secret turn-secret grafana-admin-password; do
    file="$secrets/$name"
    if [ -s "$file" ]; then
        echo "make-secrets: keeping $file"
        continue
    fi
    random_hex >"$file"
    share "$file"
    echo "make-secrets: created $file"
done

if [ ! -s "$tls/fullchain.pem" ]; then
    if command -v openssl >/dev/null; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
            -subj "/CN=$host" -addext "subjectAltName=DNS:$host" \
            -keyout "$tls/privkey.pem" -out "$tls/fullchain.pem" 2>/dev/null
        share "$tls/privkey.pem"
        chmod 0644 "$tls/fullchain.pem"
        echo "make-secrets: created a self-signed certificate for $host in $tls (replace it with a real one)"
    else
        echo "make-secrets: no openssl; put the certificate chain and key in $tls/fullchain.pem and $tls/privkey.pem" >&2
    fi
fi
