#!/bin/bash
# The console banner (backupd-banner.service): where the panel is, and the one-time setup code
# until setup is done. avahi may have renamed the appliance (backup-2.local when another
# appliance already answers backup.local), so the name is asked of avahi, not assumed; the
# banner is redrawn when the name, an address or the setup state changes.
set -uo pipefail

ISSUE=/run/issue.d/50-backupd.issue
CODE_FILE=/etc/backupd/setup-code

mdns_name() {
  busctl --system call org.freedesktop.Avahi / org.freedesktop.Avahi.Server GetHostNameFqdn 2>/dev/null |
    sed -n 's/^s "\(.*\)"$/\1/p'
}

setup_needed() {
  local answer
  # No answer (the daemon is starting): the code is still to be used.
  answer=$(curl -fsS --max-time 3 http://127.0.0.1:8080/api/setup 2>/dev/null) || return 0
  [[ $answer != *'"needed":false'* ]]
}

render() {
  local name ips code
  name=$(mdns_name)
  ips=$(ip -o addr show scope global 2>/dev/null | awk '{ split($4, a, "/"); print a[1] }' | paste -sd' ')
  echo
  echo "  Backup appliance"
  if [[ -n $name ]]; then
    echo "  Panel: http://$name"
  else
    echo "  Panel: http://$(hostname).local (mDNS not answering yet)"
  fi
  for ip in $ips; do
    if [[ $ip == *:* ]]; then echo "         http://[$ip]"; else echo "         http://$ip"; fi
  done
  if [[ -r $CODE_FILE ]] && setup_needed; then
    code=$(tr -dc '23456789ABCDEFGHJKLMNPQRSTUVWXYZ' <"$CODE_FILE")
    [[ ${#code} -eq 12 ]] && echo "  Setup code: ${code:0:4}-${code:4:4}-${code:8:4}"
  fi
  echo
}

install -d -m 0755 "$(dirname "$ISSUE")"
last=''
while :; do
  now=$(render)
  if [[ $now != "$last" ]]; then
    printf '%s\n' "$now" >"$ISSUE.new" && mv "$ISSUE.new" "$ISSUE"
    # Gettys waiting at the login prompt redraw it with the new banner.
    agetty --reload 2>/dev/null || true
    last=$now
  fi
  [[ ${1:-} == --once ]] && exit 0
  sleep 10
done
