# Shared by the bench scripts: Dovecot 2.3 (Debian's packages) on loopback
# high ports only (IMAP 21143, POP3 21110, LMTP 21024; never 110/143/993/
# 995), set up in Dovecot's favour: maildir, SHA512-CRYPT passwords with
# its auth cache on, its default fsync policy, its high-performance login
# mode. Source it after bench/lib/topology.sh (it uses $work and adds to the
# cleanup), then call start_dovecot ADDRESS...: those accounts, password
# bench-password, each with its Maildir at $dv/mail/DOMAIN/USER.
# DOVECOT_EXTRA_CONF is appended to its configuration.

ensure_dovecot() {
  # Each part it serves (a machine may have dovecot-imapd alone, as CI
  # installs it).
  if ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/pop3 ] || [ ! -x /usr/lib/dovecot/lmtp ]; then
    [ "$(id -u)" = 0 ] || { echo "dovecot is missing; run as root to install it" >&2; exit 2; }
    # Keep the package's service from starting on the standard ports.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd dovecot-pop3d dovecot-lmtpd >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
  id vmail >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin vmail
}

start_dovecot() {
  ensure_dovecot
  dv="$work/dovecot"
  mkdir -p "$dv/run" "$dv/mail"
  # Dovecot's unprivileged processes read the password file and sockets.
  chmod 755 "$work" "$dv"
  local hash a
  hash=$(doveadm pw -s SHA512-CRYPT -p bench-password)
  for a in "$@"; do echo "$a:$hash"; done > "$dv/passwd"
  chmod 644 "$dv/passwd"
  cat > "$dv/dovecot.conf" <<CONF
protocols = imap pop3 lmtp
listen = 127.0.0.1
base_dir = $dv/run
log_path = $dv/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
auth_cache_size = 10M
auth_cache_ttl = 300 s
mail_location = maildir:$dv/mail/%d/%n
mail_fsync = optimized
mail_uid = vmail
mail_gid = vmail
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = $dv/passwd
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=$dv/mail/%d/%n
}
# Dovecot's high-performance login mode: no fork per connection.
service imap-login {
  service_count = 0
  process_min_avail = 2
  inet_listener imap {
    port = 21143
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  service_count = 0
  process_min_avail = 2
  inet_listener pop3 {
    port = 21110
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 21024
  }
}
${DOVECOT_EXTRA_CONF:-}
CONF
  chown -R vmail:vmail "$dv/mail"
  dovecot -c "$dv/dovecot.conf"
  extra_cleanup="doveadm -c $dv/dovecot.conf stop 2>/dev/null || true"
  wait_port 21143
}
