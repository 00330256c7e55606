#!/bin/sh
# Sets the kiosk's CUPS up for the Sportello kiosk agent (deploy/kiosk-agent/README.md):
#   - cupsd listens on the loopback and its local socket only (no printer sharing, no browsing,
#     no web interface);
#   - DirtyCleanInterval 0: job and queue state are written at every change, so a crash of cupsd
#     loses no job it accepted and reuses no job id (the agent follows jobs by id).
# Idempotent; keeps a copy of the file as it was the first time. Usage (as root):
#   sh cups-kiosk-setup.sh [/etc/cups/cupsd.conf]
# then `systemctl restart cups`.
set -eu
conf=${1:-/etc/cups/cupsd.conf}
[ -f "$conf" ] || { echo "cups-kiosk-setup: $conf not found (apt-get install cups)" >&2; exit 1; }
[ -e "$conf.before-sportello" ] || cp -p "$conf" "$conf.before-sportello"
tmp="$conf.sportello-new"
# Top-level directives this script owns are dropped wherever they are, then set once at the end.
grep -Ev '^[[:space:]]*(Listen|Port|Browsing|BrowseLocalProtocols|WebInterface|DirtyCleanInterval)([[:space:]]|$)' \
  "$conf" | sed '/^# Sportello kiosk (deploy\/kiosk-agent)/d' > "$tmp"
cat >> "$tmp" <<'CONF'
# Sportello kiosk (deploy/kiosk-agent): loopback only, state written at once.
Listen 127.0.0.1:631
Listen /run/cups/cups.sock
Browsing No
BrowseLocalProtocols none
WebInterface No
DirtyCleanInterval 0
CONF
if ! cupsd -t -c "$tmp" >/dev/null 2>&1; then
  echo "cups-kiosk-setup: the new configuration does not pass cupsd -t; $conf left unchanged:" >&2
  cupsd -t -c "$tmp" >&2 || true
  rm -f "$tmp"
  exit 1
fi
chmod --reference="$conf" "$tmp" 2>/dev/null || true
mv "$tmp" "$conf"
echo "cups-kiosk-setup: $conf updated (was saved as $conf.before-sportello); now: systemctl restart cups"
