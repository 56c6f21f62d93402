# A power user's filter with 50 rules, for bench/sieve-ingest: the kind
# of script Thunderbird's or Roundcube's filter editors and hand-written
# Pigeonhole setups leave behind. Mailing lists by List-Id, senders by
# domain, subaddress folders, spam scores, flags, nested if/elsif and
# variables from :matches. No vacation, redirect or reject: the benchmark
# must not send mail. Body-free: every test reads headers or the envelope.
#
# The benchmark's messages (Postfix's smtp-source: From load@bench.test,
# Message-Id <pid.session.countdown@host>) match none of the list, spam or
# subaddress rules; rule 50 files those whose countdown ends in an even
# hex digit into "Bench/Even" and the rest fall through to the implicit
# keep, so both fileinto and keep run.
require ["fileinto", "mailbox", "envelope", "imap4flags", "variables",
         "relational", "comparator-i;ascii-numeric", "subaddress"];

# 1-4: spam, first (a high score ends the script).
if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "10" {
  fileinto :create "Junk";
  stop;
}
if anyof (header :contains "X-Spam-Flag" "YES",
          header :contains "X-Spam-Level" "*****") {
  addflag "Junk";
  fileinto :create "Junk";
  stop;
}
if header :matches "X-Spam-Status" "Yes, score=*" {
  fileinto :create "Junk";
  stop;
}
if header :contains "X-Rspamd-Action" ["reject", "add header", "rewrite subject"] {
  fileinto :create "Junk";
  stop;
}

# 5-20: mailing lists by List-Id, each its own folder.
if header :contains "List-Id" "<rust-users.lists.rust-lang.org>" {
  fileinto :create "Lists/rust-users";
} elsif header :contains "List-Id" "<postgresql-general.lists.postgresql.org>" {
  fileinto :create "Lists/pgsql-general";
} elsif header :contains "List-Id" "<pgsql-hackers.lists.postgresql.org>" {
  fileinto :create "Lists/pgsql-hackers";
} elsif header :contains "List-Id" "<debian-devel.lists.debian.org>" {
  fileinto :create "Lists/debian-devel";
} elsif header :contains "List-Id" "<debian-security-announce.lists.debian.org>" {
  addflag "\\Flagged";
  fileinto :create "Lists/debian-security";
} elsif header :contains "List-Id" "<linux-kernel.vger.kernel.org>" {
  fileinto :create "Lists/lkml";
} elsif header :contains "List-Id" "<netdev.vger.kernel.org>" {
  fileinto :create "Lists/netdev";
} elsif header :contains "List-Id" "<dovecot.dovecot.org>" {
  fileinto :create "Lists/dovecot";
} elsif header :contains "List-Id" "<postfix-users.postfix.org>" {
  fileinto :create "Lists/postfix-users";
} elsif header :contains "List-Id" "<ietf.ietf.org>" {
  fileinto :create "Lists/ietf";
} elsif header :contains "List-Id" "<extra.ietf.org>" {
  fileinto :create "Lists/ietf-extra";
} elsif header :matches "List-Id" "*<*.googlegroups.com>*" {
  set :lower "group" "${2}";
  fileinto :create "Lists/groups/${group}";
} elsif header :matches "List-Id" "*<*.lists.sourceforge.net>*" {
  set :lower "sflist" "${2}";
  fileinto :create "Lists/sourceforge/${sflist}";
} elsif header :matches "List-Id" "*<*.freedesktop.org>*" {
  set :lower "fdo" "${2}";
  fileinto :create "Lists/freedesktop/${fdo}";
} elsif exists "List-Id" {
  fileinto :create "Lists/other";
} elsif header :contains "Precedence" ["list", "bulk"] {
  fileinto :create "Lists/bulk";
}

# 21-27: notifications from services, by sender domain.
if address :domain :is "from" "github.com" {
  if header :contains "X-GitHub-Reason" "review_requested" {
    addflag "\\Flagged";
    fileinto :create "GitHub/review";
  } elsif header :contains "X-GitHub-Reason" "mention" {
    fileinto :create "GitHub/mention";
  } elsif header :matches "List-Id" "*<*.*.github.com>*" {
    set "repo" "${3}/${2}";
    fileinto :create "GitHub/${repo}";
  } else {
    fileinto :create "GitHub";
  }
}
if address :domain :is "from" ["gitlab.com", "gitlab.example.org"] {
  fileinto :create "GitLab";
}
if address :domain :is "from" ["atlassian.net", "jira.example.org"] {
  fileinto :create "Jira";
}
if address :is "from" ["noreply@accounts.google.com", "no-reply@accounts.google.com"] {
  addflag "\\Flagged";
}

# 28-33: subaddress folders (user+folder@).
if envelope :detail "to" "lists" {
  fileinto :create "Lists/subaddressed";
} elsif envelope :detail "to" "shop" {
  fileinto :create "Shopping";
} elsif envelope :detail "to" "bank" {
  addflag "\\Flagged";
  fileinto :create "Finance";
} elsif envelope :detail "to" "travel" {
  fileinto :create "Travel";
} elsif envelope :matches :detail "to" "*" {
  if string :is "${1}" "" {
    # user+@: nothing to do
  } else {
    set :lower "sub" "${1}";
    fileinto :create "Plus/${sub}";
  }
}

# 34-40: people and work, by address and subject.
if address :is :all "from" ["boss@example.com", "ceo@example.com"] {
  addflag "\\Flagged";
}
if allof (address :domain :is "from" "example.com",
          header :contains "Subject" ["invoice", "rechnung", "facture"]) {
  fileinto :create "Finance/Invoices";
}
if header :matches "Subject" "[JIRA] (*-*) *" {
  set :upper "project" "${1}";
  fileinto :create "Jira/${project}";
}
if header :contains "Subject" ["[SECURITY]", "CVE-"] {
  addflag "\\Flagged";
}
if address :localpart :is "from" ["mailer-daemon", "postmaster"] {
  fileinto :create "Bounces";
}
if header :is "Auto-Submitted" ["auto-generated", "auto-replied"] {
  fileinto :create "Automated";
}
if header :contains "X-Mailer" ["Mailchimp", "SendGrid", "Sendinblue"] {
  fileinto :create "Newsletters";
}

# 41-45: relational checks on counts and sizes.
if header :count "gt" :comparator "i;ascii-numeric" "Received" "25" {
  fileinto :create "Junk/Looping";
}
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "20" {
  fileinto :create "Mass";
}
if size :over 20M {
  addflag "Large";
}
if header :value "lt" :comparator "i;ascii-numeric" "X-Priority" "3" {
  addflag "\\Flagged";
}
if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "5" {
  addflag "$Spammy";
}

# 46-49: mail from inside the domain gets a keyword; odd headers are noted.
if address :domain :is "from" "bench.test" {
  addflag "$Internal";
}
if header :matches "From" "*<*@*>*" {
  set :lower "fromdomain" "${3}";
}
if string :is "${fromdomain}" ["spam.example", "phish.example"] {
  fileinto :create "Junk";
  stop;
}
if not exists ["Date", "Message-Id"] {
  addflag "$NoIds";
}

# 50: split the benchmark's own messages: an even last hex digit of the
# Message-Id's countdown files into a folder, the rest are kept.
if header :matches "Message-Id" "<*.*.*@*>" {
  if string :matches "${3}" ["*0", "*2", "*4", "*6", "*8", "*a", "*c", "*e"] {
    fileinto :create "Bench/Even";
  }
}
