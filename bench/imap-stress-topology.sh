#!/usr/bin/env bash
# `mail-bench imap-stress` on the production topology: two mailbox-store
# processes on one PostgreSQL database (they learn of each other's changes
# through LISTEN/NOTIFY) and two imap-gateway processes, one per store.
# Sessions alternate between the gateways, so the sessions of one mailbox
# meet on different replicas. Four runs: 20 clients on 20 accounts and 50
# clients on 5 accounts, each with a login per session and with persistent
# sessions. Exits non-zero if any run reports a violation.
#
#   [DATABASE_URL=postgres://... MAIL_TEST_PG_CA=ca.pem] \
#     bench/imap-stress-topology.sh [seconds-per-run]
#
# Without DATABASE_URL, a throwaway PostgreSQL with TLS of its own; the
# stores reach it with sslmode=verify-full (PG_SSLMODE=disable: the extra
# line in the clear). Needs release binaries: cargo build --release --workspace --bins
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
. bench/lib/topology.sh
start_topology 2

status=0
run() {
  local clients=$1 accounts=$2 mode=$3
  echo "== $clients clients on $accounts accounts, $mode, $secs s"
  local extra=()
  [ "$mode" = persistent ] && extra+=(--persistent)
  "$bin/mail-bench" imap-stress "${imap_args[@]}" \
    --clients "$clients" --accounts "$accounts" --seconds "$secs" "${extra[@]}" \
    --setup-store "$store_uri" --secret-file "$secret_file" || status=1
}
run 20 20 login
run 20 20 persistent
run 50 5 login
run 50 5 persistent
exit "$status"
