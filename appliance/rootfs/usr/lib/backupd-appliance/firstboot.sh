#!/bin/bash
# First boot of the appliance (backupd-firstboot.service, once, as root): grow the root
# filesystem to the card, make the one-time setup code, apply the settings pre-seeded on the FAT
# partition, and turn SSH on only when a key was given. Each step is safe to run again, so an
# interrupted first boot simply runs again at the next boot (the stamp is written last).
set -euo pipefail

FW=/boot/firmware
STAMP=/var/lib/backupd-appliance/firstboot.done
ALPHABET=23456789ABCDEFGHJKLMNPQRSTUVWXYZ # the daemon's setup-code alphabet (no 0/O, 1/I)

log() { echo "backupd-firstboot: $*"; }

grow_root() {
  local src part disk num rc=0
  src=$(readlink -f "$(findmnt -no SOURCE /)")
  part=$(basename "$src")
  disk=$(lsblk -no PKNAME "$src")
  num=$(cat "/sys/class/block/$part/partition")
  # On a GPT disk written to a bigger card, the backup header is not at the end yet.
  if [[ $(blkid -o value -s PTTYPE "/dev/$disk" 2>/dev/null) == gpt ]]; then
    sfdisk --relocate gpt-bak-std "/dev/$disk" >/dev/null 2>&1 || true
  fi
  growpart "/dev/$disk" "$num" || rc=$?
  case $rc in
    0) log "grew partition $num of /dev/$disk" ;;
    1) log "the root partition already fills /dev/$disk" ;;
    *) log "growpart failed ($rc): the root filesystem keeps its size" ;;
  esac
  resize2fs "$src" 2>&1 | sed 's/^/resize2fs: /' || log "resize2fs failed"
}

# 12 characters from the 32-letter alphabet: 256 is a multiple of 32, so byte % 32 is unbiased.
setup_code() {
  local code='' b
  for b in $(od -An -tu1 -N12 /dev/urandom); do code+=${ALPHABET:b%32:1}; done
  echo "$code"
}

write_setup_code() {
  local code
  if [[ -s /etc/backupd/setup-code ]]; then
    code=$(tr -dc "$ALPHABET" </etc/backupd/setup-code)
  else
    code=$(setup_code)
    install -d -m 0770 -o root -g backupd /etc/backupd
    (umask 0137 && printf '%s\n' "$code" >/etc/backupd/setup-code.new)
    chown root:backupd /etc/backupd/setup-code.new
    mv /etc/backupd/setup-code.new /etc/backupd/setup-code
  fi
  if mountpoint -q "$FW"; then
    # CRLF: read on any computer, Windows' Notepad included.
    printf '%s\r\n' \
      "Backup appliance: one-time setup code" \
      "" \
      "    ${code:0:4}-${code:4:4}-${code:8:4}" \
      "" \
      "Open http://backup.local (or the address shown on the appliance's screen)," \
      "enter this code and choose the admin password. The code works once." >"$FW/SETUP-CODE.txt"
  else
    log "$FW is not mounted: SETUP-CODE.txt not written (the code is on the console)"
  fi
}

# KEY=VALUE lines, read as data (never sourced); CRLF and surrounding quotes tolerated.
declare -A SETTINGS=()
read_settings() {
  local file=$1 line key value
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*# || $line != *=* ]] && continue
    key=${line%%=*}
    key=${key//[[:space:]]/}
    value=${line#*=}
    value=${value#"${value%%[![:space:]]*}"}
    value=${value%"${value##*[![:space:]]}"}
    [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]] && value=${BASH_REMATCH[1]}
    SETTINGS[$key]=$value
  done <"$file"
}

apply_timezone() {
  local tz=${SETTINGS[TIMEZONE]:-}
  [[ -n $tz ]] || return 0
  if [[ $tz != *..* && -f /usr/share/zoneinfo/$tz ]]; then
    ln -sf "/usr/share/zoneinfo/$tz" /etc/localtime
    echo "$tz" >/etc/timezone
    log "time zone: $tz"
  else
    log "TIMEZONE=$tz is not a known time zone (e.g. Europe/Paris): kept UTC"
  fi
}

apply_wifi() {
  local ssid=${SETTINGS[WIFI_SSID]:-} pass=${SETTINGS[WIFI_PASSWORD]:-} country=${SETTINGS[WIFI_COUNTRY]:-} ifc=wlan0 d
  [[ -n $ssid ]] || return 0
  for d in /sys/class/net/*/wireless; do [[ -e $d ]] && ifc=$(basename "$(dirname "$d")") && break; done
  install -d -m 0755 /etc/wpa_supplicant
  {
    echo "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev"
    [[ $country =~ ^[A-Za-z]{2}$ ]] && echo "country=${country^^}"
    if [[ -n $pass ]]; then
      wpa_passphrase "$ssid" "$pass" | grep -v '^[[:space:]]*#psk='
    else
      printf 'network={\n\tssid="%s"\n\tkey_mgmt=NONE\n}\n' "$ssid"
    fi
  } >"/etc/wpa_supplicant/wpa_supplicant-$ifc.conf"
  chmod 0600 "/etc/wpa_supplicant/wpa_supplicant-$ifc.conf"
  systemctl enable "wpa_supplicant@$ifc.service" >/dev/null 2>&1 || true
  systemctl start --no-block "wpa_supplicant@$ifc.service" || true
  log "Wi-Fi: $ssid on $ifc"
}

apply_ssh() {
  local key=${SETTINGS[SSH_AUTHORIZED_KEY]:-}
  [[ -n $key ]] || return 0
  if ! [[ $key =~ ^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh.com)\ [A-Za-z0-9+/=]+ ]]; then
    log "SSH_AUTHORIZED_KEY is not an OpenSSH public key (ssh-ed25519 AAAA...): SSH stays off"
    return 0
  fi
  install -d -m 0700 /root/.ssh
  printf '%s\n' "$key" >>/root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
  # Host keys are made here, on this appliance, never shipped in the image.
  ssh-keygen -A >/dev/null
  echo 'add rule inet filter input tcp dport 22 accept' >/etc/nftables.d/ssh.nft
  # nftables.service starts after this unit and loads it; on a later run, reload now.
  systemctl is-active -q nftables.service && systemctl reload nftables.service
  systemctl enable ssh.service >/dev/null 2>&1
  systemctl start --no-block ssh.service
  log "SSH enabled for root with the pre-seeded key (keys only)"
}

apply_settings() {
  local file=$FW/backup-settings.txt
  [[ -f $file ]] || return 0
  read_settings "$file"
  apply_timezone
  apply_wifi
  apply_ssh
  # Applied once: kept for reference under another name, without the Wi-Fi password.
  sed -E 's/^([[:space:]]*WIFI_PASSWORD[[:space:]]*=).*/\1/' "$file" >"$FW/backup-settings.applied.txt"
  rm -f "$file"
}

# systemd-resolved answers DNS; an image built in a chroot may carry the builder's resolv.conf.
fix_resolv_conf() {
  if [[ $(readlink /etc/resolv.conf) != */run/systemd/resolve/stub-resolv.conf ]]; then
    ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
  fi
}

main() {
  grow_root || log "growing the root filesystem failed"
  write_setup_code
  apply_settings
  fix_resolv_conf
  install -d -m 0755 "$(dirname "$STAMP")"
  date -u +%FT%TZ >"$STAMP"
  log "done"
}
main "$@"
