# Shared by scripts/test and the bench scripts: a throwaway PostgreSQL
# cluster on a free loopback port, with TLS on (a certificate for
# 127.0.0.1 from scripts/pg-test-tls), as a managed PostgreSQL would be.
# Source it, then call start_throwaway_pg DIR. It exports DATABASE_URL (a
# superuser, trust auth on loopback) and MAIL_TEST_PG_CA (the CA file for
# sslmode=verify-full); set the caller's trap to stop_throwaway_pg before
# calling it.
# PG_SERVER_OPTS adds server options (e.g. -c shared_preload_libraries=...).
# Needs Debian's postgresql server binaries (installed when missing if run
# as root).

start_throwaway_pg() {
  local pgdir=$1 pgbin port
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing postgresql" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    else
      echo "no DATABASE_URL and no PostgreSQL server binaries (apt-get install postgresql)" >&2
      return 2
    fi
  fi
  rm -rf "$pgdir"
  mkdir -p "$pgdir"
  # Known before anything starts, so stop_throwaway_pg (the caller's trap,
  # set before this is called) cleans up after a start that failed half way.
  _pg_bin=$pgbin
  _pg_dir=$pgdir
  _pg_run=()
  local owner=""
  if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root.
    chown postgres "$pgdir"
    _pg_run=(runuser -u postgres --)
    owner=postgres
  fi
  "$(dirname "${BASH_SOURCE[0]}")/../pg-test-tls" "$pgdir/tls" "$owner"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${_pg_run[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${_pg_run[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $pgdir -c max_connections=300 -c ssl=on -c ssl_cert_file=$pgdir/tls/server.crt -c ssl_key_file=$pgdir/tls/server.key ${PG_SERVER_OPTS:-}" \
    start >/dev/null
  # The postmaster's pid, for benchmarks that count its CPU time.
  pg_postmaster_pid=$(head -n 1 "$pgdir/data/postmaster.pid")
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export MAIL_TEST_PG_CA="$pgdir/tls/ca.pem"
  echo "throwaway PostgreSQL with TLS on 127.0.0.1:$port ($pgbin)" >&2
}

stop_throwaway_pg() {
  [ -n "${_pg_dir:-}" ] || return 0
  "${_pg_run[@]}" "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$_pg_dir"
}
