#!/usr/bin/env bash
# Runs Postfix's smtp-source against an SMTP listener without installing
# Postfix (no daemon is ever started): the package is downloaded and
# unpacked into a cache directory.
#   bench/smtp-source.sh HOST:PORT [sessions] [messages] [size]
# SMTP_SOURCE_FLAGS adds smtp-source options: -L speaks LMTP, -d keeps the
# connection for the next message. SMTP_SOURCE_TO: the recipient (default
# bench@bench.test).
set -euo pipefail
target=${1:?usage: bench/smtp-source.sh HOST:PORT [sessions] [messages] [size]}
sessions=${2:-20}; messages=${3:-10000}; size=${4:-4096}
cache=${POSTFIX_CACHE:-/tmp/postfix-unpacked}
if [ ! -x "$cache/usr/sbin/smtp-source" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download postfix >/dev/null)
  dpkg-deb -x "$tmp"/postfix_*.deb "$cache"
  rm -rf "$tmp"
fi
start=$(date +%s.%N)
LD_LIBRARY_PATH="$cache/usr/lib/postfix" "$cache/usr/sbin/smtp-source" \
  ${SMTP_SOURCE_FLAGS:-} -s "$sessions" -m "$messages" -l "$size" \
  -f load@bench.test -t "${SMTP_SOURCE_TO:-bench@bench.test}" "$target"
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'smtp-source: {$messages} messages of {$size} B, {$sessions} sessions: {s:.2f} s, {$messages/s:.0f} messages/s')"
