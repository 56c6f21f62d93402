# Shared by the bench scripts: our PostgreSQL topology as separate
# processes on loopback. Source it, then call start_topology; cleanup runs
# on exit. Needs release binaries in $BIN (default target/release).
#
# PostgreSQL: with DATABASE_URL unset, a throwaway cluster of its own with
# TLS on (scripts/lib/pg-cluster.sh). With DATABASE_URL (a role that may
# CREATE DATABASE), that server; then MAIL_TEST_PG_CA names the CA file of
# its certificate (scripts/pg-test-tls makes one). The stores reach it as
# production does, over TLS with sslmode=verify-full; PG_SSLMODE=disable
# only for a labelled extra line.
#
# Every gateway balances its calls over all the stores (store_url lists
# them, as a headless Service does in Kubernetes). STORE_MTLS=1: the
# stores serve gRPC only over mutual TLS (certificates from `mailctl init
# --grpc-tls-dir`), every caller presents the client certificate; the
# callers of a bench script take `$store_tls_env` (IMAP_/POP3_/SMTP_ +
# STORE_TLS_CA/CERT/KEY, see tls_env) for the processes they start.
bin=${BIN:-target/release}
work=$(mktemp -d)
db="mailbench_$$"
pids=()
pg_sslmode=${PG_SSLMODE:-verify-full}
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/pg-cluster.sh"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${extra_cleanup:-}" ] && eval "$extra_cleanup"
  psql -q "${DATABASE_URL:-}" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  stop_throwaway_pg
  rm -rf "$work"
}
trap cleanup EXIT
# no_pg=1: the caller needs no PostgreSQL at all.
if [ -z "${DATABASE_URL:-}" ] && [ "${no_pg:-0}" != 1 ]; then
  chmod 755 "$work"   # the cluster runs as postgres
  start_throwaway_pg "$work/pg"
fi

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1; the services' logs begin:" >&2
  for f in "$work"/*.log; do echo "== $f" >&2; head -n 8 "$f" >&2; done
  return 1
}

# The client-TLS variables for a caller with env PREFIX (IMAP, POP3,
# SMTP, MAILCTL), empty without STORE_MTLS.
tls_env() {
  [ "${STORE_MTLS:-0}" = 1 ] || return 0
  echo "$1_STORE_TLS_CA=$work/grpc/ca.crt $1_STORE_TLS_CERT=$work/grpc/client.crt $1_STORE_TLS_KEY=$work/grpc/client.key"
}

# start_topology STORES: STORES mailbox-store processes on one fresh
# database (ports 50151..), one imap-gateway per store (11141..) and one
# pop3-gateway on the first store (11110).
start_topology() {
  local n=${1:-2}
  : "${DATABASE_URL:?DATABASE_URL must name a PostgreSQL role that may CREATE DATABASE}"
  # A leftover process on one of our ports would be measured instead.
  local p
  for p in $(seq 50151 $((50150 + n))) $(seq 11141 $((11140 + n))) 11110; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "port $p is already in use (a leftover benchmark process?)" >&2
      exit 1
    fi
  done
  psql -q "$DATABASE_URL" -c "CREATE DATABASE $db"
  # TLS between the stores and PostgreSQL, verified against the cluster's
  # CA, as with any managed PostgreSQL (PG_SSLMODE=disable: the extra line).
  # The server part of DATABASE_URL (its query may hold paths with '/').
  local server="${DATABASE_URL%%\?*}"
  local url="${server%/*}/$db?sslmode=$pg_sslmode"
  if [ "$pg_sslmode" != disable ]; then
    : "${MAIL_TEST_PG_CA:?MAIL_TEST_PG_CA must name the CA file of the PostgreSQL server certificate (scripts/pg-test-tls), or leave DATABASE_URL unset for a throwaway cluster}"
    url+="&sslrootcert=$MAIL_TEST_PG_CA"
  fi
  echo "stores reach PostgreSQL with sslmode=$pg_sslmode" >&2
  head -c 32 /dev/urandom | base64 > "$work/secret"
  local store_tls=()
  scheme=http
  if [ "${STORE_MTLS:-0}" = 1 ]; then
    "$bin/mailctl" --data-dir "$work/init" init --tls-dir "$work/init/tls" \
      --grpc-tls-dir "$work/grpc" --store-hostname localhost >/dev/null
    store_tls=(MAILSTORE_GRPC_TLS_CERT="$work/grpc/store.crt" MAILSTORE_GRPC_TLS_KEY="$work/grpc/store.key"
               MAILSTORE_GRPC_TLS_CLIENT_CA="$work/grpc/ca.crt")
    scheme=https
    echo "store gRPC: mutual TLS" >&2
    # mail-bench and mailctl, started by the bench scripts, present it too.
    export MAIL_BENCH_STORE_TLS_CA="$work/grpc/ca.crt" MAIL_BENCH_STORE_TLS_CERT="$work/grpc/client.crt" \
      MAIL_BENCH_STORE_TLS_KEY="$work/grpc/client.key"
    export MAILCTL_STORE_TLS_CA="$work/grpc/ca.crt" MAILCTL_STORE_TLS_CERT="$work/grpc/client.crt" \
      MAILCTL_STORE_TLS_KEY="$work/grpc/client.key"
  else
    echo "store gRPC: plaintext h2c (STORE_MTLS=1 for mutual TLS)" >&2
  fi
  for i in $(seq 1 "$n"); do
    env "${store_tls[@]}" MAILSTORE_LISTEN="127.0.0.1:5015$i" MAILSTORE_DATABASE_URL="$url" \
      MAILSTORE_SERVICE_SECRET_FILE="$work/secret" MAILSTORE_ADMIN_LISTEN="127.0.0.1:928$i" \
      RUST_LOG=warn "$bin/mailbox-store" >"$work/store$i.log" 2>&1 &
    pids+=($!)
    wait_port "5015$i"
  done
  # The name the stores' certificate carries; the address stays loopback.
  local host=127.0.0.1
  [ "$scheme" = https ] && host=localhost
  store_list=""
  for i in $(seq 1 "$n"); do store_list+="${store_list:+,}$scheme://$host:5015$i"; done
  # Every benchmark client comes from 127.0.0.1: lift the per-address
  # connection limit (50 by default) so that closing and new sessions of
  # a login-per-session load never meet it. IMAP_MAX_CONNECTIONS (5,000
  # by default) passes through from the environment.
  for i in $(seq 1 "$n"); do
    IMAP_MAX_CONNECTIONS_PER_IP=${IMAP_MAX_CONNECTIONS_PER_IP:-1000} \
    env $(tls_env IMAP) IMAP_LISTEN="127.0.0.1:1114$i" IMAP_STORE_URL="$store_list" \
      IMAP_SERVICE_SECRET_FILE="$work/secret" IMAP_ADMIN_LISTEN="127.0.0.1:929$i" \
      RUST_LOG=warn "$bin/imap-gateway" >"$work/imap$i.log" 2>&1 &
    pids+=($!)
    wait_port "1114$i"
  done
  env $(tls_env POP3) POP3_LISTEN="127.0.0.1:11110" POP3_STORE_URL="$store_list" \
    POP3_SERVICE_SECRET_FILE="$work/secret" POP3_ADMIN_LISTEN="127.0.0.1:9290" \
    RUST_LOG=warn "$bin/pop3-gateway" >"$work/pop3.log" 2>&1 &
  pids+=($!)
  wait_port 11110
  # What the load generators use to set up accounts (the first store), and
  # what another caller started by a bench script should use.
  store_uri=$scheme://$host:50151
  secret_file="$work/secret"
  imap_args=()
  for i in $(seq 1 "$n"); do imap_args+=(--imap "127.0.0.1:1114$i"); done
}
