#!/usr/bin/env bash
# `mail-bench imap-stress` on the production topology: two mailbox-store
# processes on one PostgreSQL database (they learn of each other's changes
# through LISTEN/NOTIFY) and two imap-gateway processes, one per store.
# Sessions alternate between the gateways, so the sessions of one mailbox
# meet on different replicas. Four runs: 20 clients on 20 accounts and 50
# clients on 5 accounts, each with a login per session and with persistent
# sessions. Exits non-zero if any run reports a violation.
#
#   DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
#     bench/imap-stress-topology.sh [seconds-per-run]
#
# Needs release binaries: cargo build --release -p mailbox-store -p imap-gateway -p mail-bench
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
: "${DATABASE_URL:?DATABASE_URL must name a PostgreSQL role that may CREATE DATABASE}"
bin=${BIN:-target/release}
work=$(mktemp -d)
db="mailstress_$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$DATABASE_URL" -c "CREATE DATABASE $db"
url="${DATABASE_URL%/*}/$db"
head -c 32 /dev/urandom | base64 > "$work/secret"

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

for i in 1 2; do
  MAILSTORE_LISTEN="127.0.0.1:5015$i" MAILSTORE_DATABASE_URL="$url" \
    MAILSTORE_SERVICE_SECRET_FILE="$work/secret" MAILSTORE_ADMIN_LISTEN="127.0.0.1:928$i" \
    RUST_LOG=warn "$bin/mailbox-store" >"$work/store$i.log" 2>&1 &
  pids+=($!)
  wait_port "5015$i"
done
for i in 1 2; do
  IMAP_LISTEN="127.0.0.1:1114$i" IMAP_STORE_URL="http://127.0.0.1:5015$i" \
    IMAP_SERVICE_SECRET_FILE="$work/secret" IMAP_ADMIN_LISTEN="127.0.0.1:929$i" \
    RUST_LOG=warn "$bin/imap-gateway" >"$work/imap$i.log" 2>&1 &
  pids+=($!)
  wait_port "1114$i"
done

status=0
run() {
  local clients=$1 accounts=$2 mode=$3
  echo "== $clients clients on $accounts accounts, $mode, $secs s"
  local extra=()
  [ "$mode" = persistent ] && extra+=(--persistent)
  "$bin/mail-bench" imap-stress --imap 127.0.0.1:11141 --imap 127.0.0.1:11142 \
    --clients "$clients" --accounts "$accounts" --seconds "$secs" "${extra[@]}" \
    --setup-store http://127.0.0.1:50151 --secret-file "$work/secret" || status=1
}
run 20 20 login
run 20 20 persistent
run 50 5 login
run 50 5 persistent
exit "$status"
