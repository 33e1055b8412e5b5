#!/usr/bin/env bash
# Real servers for the integration tests, all on 127.0.0.1, all under one state directory:
#   S3    Ceph RADOS Gateway (ceph-mon + ceph-osd on memstore + radosgw)
#   SFTP  OpenSSH sshd with internal-sftp and rsync on the server side (Hetzner Storage Box stand-in)
#   SMTP  Exim 4 with SMTP AUTH after STARTTLS, delivering every message to one Maildir, relaying nothing
#
# Usage: bash scripts/test-services.sh install|start|stop [--clean]|status|env
#
# Environment (all optional):
#   TEST_SERVICES_DIR   state directory (default: <repo>/.test-services)
#   TEST_S3_PORT        radosgw port          (default 7480)
#   TEST_CEPH_MON_PORT  ceph-mon msgr2 port   (default 3300)
#   TEST_SFTP_PORT      sshd port             (default 2222)
#   TEST_SMTP_PORT      exim port             (default 2525)
#   TEST_SFTP_USER      unix account of the SFTP/rsync server (default backupbox; root only)
#   TEST_CEPH_MEMSTORE_BYTES  capacity the in-memory OSD reports (default 4 GiB)
#   TEST_SERVICES_TIMEOUT     seconds to wait for a service to answer (default 120)
#
# `start` writes $TEST_SERVICES_DIR/services.json and services.env (see `env`). A second `start`
# reuses every service that is still alive and answering.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${TEST_SERVICES_DIR:-$REPO_ROOT/.test-services}
S3_PORT=${TEST_S3_PORT:-7480}
MON_PORT=${TEST_CEPH_MON_PORT:-3300}
SFTP_PORT=${TEST_SFTP_PORT:-2222}
SMTP_PORT=${TEST_SMTP_PORT:-2525}
MEMSTORE_BYTES=${TEST_CEPH_MEMSTORE_BYTES:-4294967296}
WAIT_TIMEOUT=${TEST_SERVICES_TIMEOUT:-120}
HOST=127.0.0.1
check_port() {
  if ! [[ $2 =~ ^[0-9]{1,5}$ ]] || (($2 < 1 || $2 > 65535)); then
    printf 'test-services: error: %s must be a TCP port number, not "%s"\n' "$1" "$2" >&2
    exit 2
  fi
}
check_port TEST_S3_PORT "$S3_PORT"
check_port TEST_CEPH_MON_PORT "$MON_PORT"
check_port TEST_SFTP_PORT "$SFTP_PORT"
check_port TEST_SMTP_PORT "$SMTP_PORT"

PACKAGES=(ceph-mon ceph-osd radosgw ceph-common openssh-server openssh-client rsync rclone
  exim4-daemon-light swaks libnet-ssleay-perl openssl)

T0=$(date +%s%N)
say() { printf '[test-services %5.1fs] %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }
die() {
  printf 'test-services: error: %s\n' "$*" >&2
  exit 1
}
is_root() { [[ $(id -u) -eq 0 ]]; }
as_root() { if is_root; then "$@"; else sudo "$@"; fi; }
rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
# A secret of [A-Za-z0-9] characters, safe in any config file, URL or shell.
rand_secret() { head -c 48 /dev/urandom | base64 -w0 | tr -d '/+=' | cut -c1-"$1"; }

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------
missing_packages() {
  local installed p
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null |
    awk '$2 == "installed" { print $1 }' || true)
  for p in "${PACKAGES[@]}"; do
    grep -qxF -- "$p" <<<"$installed" || echo "$p"
  done
}

cmd_install() {
  local missing
  mapfile -t missing < <(missing_packages)
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "packages already installed"
    return 0
  fi
  say "installing ${missing[*]}"
  # Keep the package scripts from starting system-wide daemons (sshd on :22, exim on :25):
  # only our own instances, on 127.0.0.1, may run.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=1
    # shellcheck disable=SC2064 # $policy is fixed now
    trap "as_root rm -f $policy" EXIT
  fi
  local rc=0
  {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  } >"${TMPDIR:-/tmp}/test-services-apt.log" 2>&1 || rc=$?
  if [[ $added_policy -eq 1 ]]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
  if [[ $rc -ne 0 ]]; then
    tail -n 30 "${TMPDIR:-/tmp}/test-services-apt.log" >&2
    die "apt-get failed (full log: ${TMPDIR:-/tmp}/test-services-apt.log)"
  fi
  say "installed"
}

# ---------------------------------------------------------------------------------------------
# processes: every service runs in its own session, its pid in $DIR/pids/<name>.pid
# ---------------------------------------------------------------------------------------------
PIDS=$DIR/pids

# launch NAME LOGFILE COMMAND... : start a daemon that stays in the foreground, detached from us.
launch() {
  local name=$1 log=$2
  shift 2
  # The lock fd (9) must not leak into the daemons, nor our stdout (a caller may be reading it).
  setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  echo $! >"$PIDS/$name.pid"
}

# pid_of NAME: the recorded pid, if that process is alive and is still ours.
pid_of() {
  local f=$PIDS/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  proc_alive "$pid" || return 1
  # The command line of every daemon we start names a file under $DIR: guards against pid reuse.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$DIR/"* ]] || return 1
  echo "$pid"
}

# A zombie (state Z) is gone for our purposes.
proc_alive() {
  local state
  state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

descendants() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$child"
    descendants "$child"
  done
}

# stop_procs NAME...: TERM each recorded process and its children, wait up to 10 s, then KILL.
stop_procs() {
  local name pid all=() p i
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      all+=("$pid")
      mapfile -t -O "${#all[@]}" all < <(descendants "$pid")
    fi
    rm -f "$PIDS/$name.pid"
  done
  [[ ${#all[@]} -gt 0 ]] || return 0
  kill -TERM "${all[@]}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    local alive=()
    for p in "${all[@]}"; do
      if proc_alive "$p"; then alive+=("$p"); fi
    done
    [[ ${#alive[@]} -gt 0 ]] || return 0
    all=("${alive[@]}")
    sleep 0.1
  done
  say "killing ${all[*]} (did not stop within 10 s)"
  kill -KILL "${all[@]}" 2>/dev/null || true
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

require_free_port() {
  local port=$1 what=$2 var=$3
  if port_open "$port"; then
    local who
    who=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:.*' | head -n1 || true)
    die "port $port ($what) on $HOST is already in use${who:+ by $who}. Stop that process or set $var to a free port."
  fi
}

# wait_until SECONDS DESCRIPTION LOGFILE PIDNAME COMMAND...: poll COMMAND every 0.2 s.
wait_until() {
  local limit=$1 what=$2 log=$3 pidname=$4
  shift 4
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $pidname ]] && ! proc_alive "$(cat "$PIDS/$pidname.pid" 2>/dev/null)"; then
      tail -n 20 "$log" >&2 || true
      die "$what: the process died (log: $log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$log" >&2 || true
      die "$what: no answer within $limit s (log: $log)"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------------
# S3: Ceph mon + memstore OSD + radosgw
# ---------------------------------------------------------------------------------------------
C=$DIR/ceph
CEPH_CONF_FILE=$C/ceph.conf
CEPH_PROCS=(radosgw ceph-osd ceph-mon)

# In this order: the gateway hangs when its OSD goes first, and the OSD waits up to 5 s for the
# monitor to acknowledge its shutdown.
stop_ceph() {
  stop_procs radosgw
  stop_procs ceph-osd
  stop_procs ceph-mon
}

ceph_cli() { ceph -c "$CEPH_CONF_FILE" --connect-timeout 30 "$@"; }

# Environment for rclone against our S3 (AWS_CA_BUNDLE breaks rclone's S3 backend: drop it).
s3_rclone() {
  env -u AWS_CA_BUNDLE RCLONE_CONFIG=/dev/null \
    RCLONE_CONFIG_TSPROBE_TYPE=s3 RCLONE_CONFIG_TSPROBE_PROVIDER=Ceph \
    RCLONE_CONFIG_TSPROBE_ENDPOINT="http://$HOST:$S3_PORT" \
    RCLONE_CONFIG_TSPROBE_ACCESS_KEY_ID="$S3_ACCESS_KEY" \
    RCLONE_CONFIG_TSPROBE_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
    RCLONE_CONFIG_TSPROBE_REGION=default RCLONE_CONFIG_TSPROBE_FORCE_PATH_STYLE=true \
    rclone --retries 1 --low-level-retries 1 --contimeout 2s --timeout 10s "$@"
}
s3_answers() { s3_rclone lsd tsprobe: >/dev/null 2>&1; }
# Any HTTP answer from radosgw (it answers 403 to an anonymous request once it is up).
rgw_http_answers() {
  local answer
  answer=$(timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$S3_PORT && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3" 2>/dev/null) || true
  [[ $answer == HTTP/* ]]
}

s3_load_creds() {
  [[ -s $C/s3.creds ]] || return 1
  # shellcheck disable=SC1091
  source "$C/s3.creds"
  [[ -n ${S3_ACCESS_KEY:-} && -n ${S3_SECRET_KEY:-} ]]
}

s3_reusable() {
  local p
  for p in "${CEPH_PROCS[@]}"; do pid_of "$p" >/dev/null || return 1; done
  grep -q "endpoint=$HOST:$S3_PORT\$" "$CEPH_CONF_FILE" 2>/dev/null || return 1
  grep -q "^mon host = v2:$HOST:$MON_PORT\$" "$CEPH_CONF_FILE" 2>/dev/null || return 1
  s3_load_creds && s3_answers
}

# Phase 1: write the cluster, start mon, OSD and gateway; does not wait for the gateway.
s3_begin() {
  if s3_reusable; then
    say "s3: reusing the running Ceph gateway on $HOST:$S3_PORT"
    S3_REUSED=1
    return 0
  fi
  S3_REUSED=0
  stop_ceph
  rm -rf "$C"
  require_free_port "$MON_PORT" "Ceph monitor" TEST_CEPH_MON_PORT
  require_free_port "$S3_PORT" "S3 / radosgw" TEST_S3_PORT
  mkdir -p "$C"/{run,log,mon,osd/ceph-0,rgw,crash}
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$CEPH_CONF_FILE" <<EOF
[global]
fsid = $fsid
mon host = v2:$HOST:$MON_PORT
mon initial members = a
public addr = $HOST
cluster addr = $HOST
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $C/run
log file = $C/log/\$cluster-\$name.log
crash dir = $C/crash
mon cluster log file = $C/log/cluster.log
mon data = $C/mon/\$cluster-\$id
osd data = $C/osd/\$cluster-\$id
rgw data = $C/rgw
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
# Commit monitor changes at once instead of batching them for 1 s: radosgw creates its pools
# with a dozen monitor commands in a row at first start.
paxos propose interval = 0.01
paxos min wait = 0.001
# The monitor hands new placement groups to the OSD on its tick (5 s by default).
mon tick interval = 1
[mon]
admin socket = $C/run/\$cluster-\$name.asok
pid file = $C/run/\$name.pid
[osd]
admin socket = $C/run/\$cluster-\$name.asok
pid file = $C/run/\$name.pid
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd journal = $C/osd/\$cluster-\$id/journal
[client.admin]
keyring = $C/client.admin.keyring
[client.rgw.a]
keyring = $C/client.rgw.a.keyring
admin socket = $C/run/\$cluster-\$name.asok
pid file = $C/run/\$name.pid
rgw frontends = beast endpoint=$HOST:$S3_PORT
rgw thread pool size = 32
EOF
  say "s3: creating a Ceph cluster (fsid $fsid) in $C"
  # Every key the cluster needs, made up front and imported into the monitor's keyring, so that
  # no key has to be fetched from the monitor later.
  ceph-authtool --create-keyring "$C/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$C/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool --create-keyring "$C/osd/ceph-0/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool --create-keyring "$C/client.rgw.a.keyring" --gen-key -n client.rgw.a \
    --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
  local k
  for k in "$C/client.admin.keyring" "$C/osd/ceph-0/keyring" "$C/client.rgw.a.keyring"; do
    ceph-authtool "$C/mon.keyring" --import-keyring "$k" >/dev/null
  done
  monmaptool -c "$CEPH_CONF_FILE" --create --addv a "[v2:$HOST:$MON_PORT]" --fsid "$fsid" \
    "$C/monmap" >/dev/null
  ceph-mon -c "$CEPH_CONF_FILE" --mkfs -i a --monmap "$C/monmap" --keyring "$C/mon.keyring" \
    >"$C/log/mkfs-mon.log" 2>&1 || { cat "$C/log/mkfs-mon.log" >&2; die "ceph-mon --mkfs failed"; }
  launch ceph-mon "$C/log/ceph-mon.out" ceph-mon -c "$CEPH_CONF_FILE" -f -i a
  # Waits for the monitor itself (bounded by --connect-timeout).
  local id
  id=$(ceph_cli osd new "$osd_uuid" 2>>"$C/log/cli.log") ||
    { tail -n 20 "$C/log/ceph-mon.a.log" >&2 || true; die "ceph: the monitor did not answer (log: $C/log)"; }
  [[ $id == 0 ]] || die "ceph: expected OSD id 0, got '$id'"
  ceph-osd -c "$CEPH_CONF_FILE" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$C/log/mkfs-osd.log" 2>&1 ||
    { cat "$C/log/mkfs-osd.log" >&2; die "ceph-osd --mkfs failed"; }
  launch ceph-osd "$C/log/ceph-osd.out" ceph-osd -c "$CEPH_CONF_FILE" -f -i 0
  # The gateway creates its pools and waits for the OSD by itself.
  launch radosgw "$C/log/radosgw.out" radosgw -c "$CEPH_CONF_FILE" -f -n client.rgw.a
}

# Phase 2: wait for the gateway, create the S3 user, prove an authenticated request works.
s3_finish() {
  [[ $S3_REUSED == 1 ]] && return 0
  wait_until "$WAIT_TIMEOUT" "s3: radosgw on $HOST:$S3_PORT" "$C/log/ceph-client.rgw.a.log" radosgw rgw_http_answers
  say "s3: radosgw answers; creating the S3 user"
  S3_ACCESS_KEY=$(rand_hex 10 | tr a-f A-F)
  S3_SECRET_KEY=$(rand_secret 40)
  radosgw-admin -c "$CEPH_CONF_FILE" user create --uid=test --display-name="test user" \
    --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >"$C/log/user-create.log" 2>&1 ||
    { tail -n 20 "$C/log/user-create.log" >&2; die "radosgw-admin user create failed"; }
  printf 'S3_ACCESS_KEY=%q\nS3_SECRET_KEY=%q\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$C/s3.creds"
  chmod 600 "$C/s3.creds"
  wait_until 30 "s3: authenticated ListBuckets" "$C/log/ceph-client.rgw.a.log" radosgw s3_answers
  say "s3: ready on http://$HOST:$S3_PORT"
}

# ---------------------------------------------------------------------------------------------
# SFTP / rsync over ssh: OpenSSH sshd
# ---------------------------------------------------------------------------------------------
S=$DIR/sftp
SFTP_USER_DEFAULT=backupbox

sftp_settings() {
  if is_root; then
    SFTP_USER=${TEST_SFTP_USER:-$SFTP_USER_DEFAULT}
  else
    # Without root sshd can only let in the account it runs as.
    SFTP_USER=$(id -un)
  fi
  SFTP_ROOT=$S/home
}

ssh_args() {
  printf '%s\n' -F /dev/null -p "$SFTP_PORT" -i "$S/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$S/known_hosts" -o ConnectTimeout=5 \
    -o LogLevel=ERROR
}
sftp_answers() {
  local args
  mapfile -t args < <(ssh_args)
  # rsync must be on the server's PATH; as root the account's home is the root directory.
  local check="command -v rsync >/dev/null && test -w '$SFTP_ROOT'"
  if is_root; then check+=" && test \"\$HOME\" = '$SFTP_ROOT'"; fi
  # shellcheck disable=SC2029 # expanded here on purpose
  ssh "${args[@]}" "$SFTP_USER@$HOST" "$check"
}

sftp_reusable() {
  pid_of sshd >/dev/null || return 1
  grep -q "^Port $SFTP_PORT\$" "$S/sshd_config" 2>/dev/null || return 1
  grep -q "^AllowUsers $SFTP_USER\$" "$S/sshd_config" 2>/dev/null || return 1
  sftp_answers >/dev/null 2>&1
}

ensure_sftp_account() {
  mkdir -p "$SFTP_ROOT"
  if ! is_root; then
    return 0
  fi
  if ! id -u "$SFTP_USER" >/dev/null 2>&1; then
    useradd --home-dir "$SFTP_ROOT" --no-create-home --shell /bin/sh --user-group "$SFTP_USER"
  elif [[ $(getent passwd "$SFTP_USER" | cut -d: -f6) != "$SFTP_ROOT" ]]; then
    usermod --home "$SFTP_ROOT" "$SFTP_USER"
  fi
  # '*' instead of a locked '!': sshd with UsePAM no refuses locked accounts even for keys.
  usermod -p '*' "$SFTP_USER"
  [[ $(getent passwd "$SFTP_USER" | cut -d: -f7) == */nologin ]] && usermod --shell /bin/sh "$SFTP_USER"
  chown "$SFTP_USER:" "$SFTP_ROOT"
  chmod 755 "$SFTP_ROOT"
}

sftp_start() {
  sftp_settings
  if sftp_reusable; then
    say "sftp: reusing the running sshd on $HOST:$SFTP_PORT"
    return 0
  fi
  stop_procs sshd
  rm -rf "$S"
  require_free_port "$SFTP_PORT" "SFTP / sshd" TEST_SFTP_PORT
  mkdir -p "$S"
  chmod 755 "$DIR" "$S"
  ensure_sftp_account
  ssh-keygen -q -t ed25519 -N '' -C "test-services host key" -f "$S/ssh_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C "test-services client key" -f "$S/id_ed25519"
  cp "$S/id_ed25519.pub" "$S/authorized_keys"
  chmod 644 "$S/authorized_keys"
  printf '[%s]:%s %s\n' "$HOST" "$SFTP_PORT" "$(cut -d' ' -f1,2 "$S/ssh_host_ed25519_key.pub")" >"$S/known_hosts"
  cat >"$S/sshd_config" <<EOF
Port $SFTP_PORT
ListenAddress $HOST
AddressFamily inet
HostKey $S/ssh_host_ed25519_key
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
AllowUsers $SFTP_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTTY yes
PrintMotd no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
EOF
  # sshd needs its privilege-separation directory.
  [[ -d /run/sshd ]] || as_root mkdir -p -m 0755 /run/sshd
  /usr/sbin/sshd -t -f "$S/sshd_config" || die "sshd rejected $S/sshd_config"
  launch sshd "$S/sshd.out" /usr/sbin/sshd -D -f "$S/sshd_config" -E "$S/sshd.log"
  wait_until "$WAIT_TIMEOUT" "sftp: sshd on $HOST:$SFTP_PORT" "$S/sshd.log" sshd sftp_answers
  say "sftp: ready on $HOST:$SFTP_PORT as $SFTP_USER (root $SFTP_ROOT)"
}

# ---------------------------------------------------------------------------------------------
# SMTP: Exim 4 (AUTH PLAIN/LOGIN only after STARTTLS; every message into one Maildir)
# ---------------------------------------------------------------------------------------------
M=$DIR/smtp

smtp_banner_ehlo() {
  # shellcheck disable=SC2016 # the inner script gets host and port as arguments
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    IFS= read -r -t 4 line <&3 && [[ $line == 220* ]] || exit 1
    printf "EHLO probe.localhost\r\n" >&3
    ok=0
    while IFS= read -r -t 4 line <&3; do
      [[ $line == 250?STARTTLS* ]] && ok=1
      [[ $line == 250\ * ]] && break
    done
    printf "QUIT\r\n" >&3
    [[ $ok == 1 ]]' _ "$HOST" "$SMTP_PORT"
}

smtp_reusable() {
  pid_of exim >/dev/null || return 1
  grep -q "^daemon_smtp_ports = $SMTP_PORT\$" "$M/exim.conf" 2>/dev/null || return 1
  [[ -s $M/smtp.creds ]] || return 1
  smtp_banner_ehlo >/dev/null 2>&1
}

smtp_load_creds() {
  # shellcheck disable=SC1091
  source "$M/smtp.creds"
}

smtp_start() {
  if smtp_reusable; then
    smtp_load_creds
    say "smtp: reusing the running exim on $HOST:$SMTP_PORT"
    return 0
  fi
  stop_procs exim
  rm -rf "$M"
  require_free_port "$SMTP_PORT" "SMTP / exim" TEST_SMTP_PORT
  mkdir -p "$M"/{spool,log,Maildir/new,Maildir/cur,Maildir/tmp}
  SMTP_USER="mailer-$(rand_hex 3)"
  SMTP_PASSWORD=$(rand_secret 24)
  printf 'SMTP_USER=%q\nSMTP_PASSWORD=%q\n' "$SMTP_USER" "$SMTP_PASSWORD" >"$M/smtp.creds"
  chmod 600 "$M/smtp.creds"
  # A throwaway CA-less self-signed certificate for 127.0.0.1/localhost; clients trust this file.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=$HOST" -addext "subjectAltName=IP:$HOST,DNS:localhost" \
    -keyout "$M/tls.key" -out "$M/tls.crt" 2>/dev/null
  local exim_user
  # Exim run with -C as root drops to its own user; run by anyone else, it stays that user.
  if is_root; then exim_user=Debian-exim; else exim_user=$(id -un); fi
  cat >"$M/exim.conf" <<EOF
# Test-only Exim: 127.0.0.1, AUTH after STARTTLS, every accepted message into one Maildir.
# There is no router or transport that sends mail anywhere else.
primary_hostname = localhost
qualify_domain = localhost
local_interfaces = $HOST
daemon_smtp_ports = $SMTP_PORT
spool_directory = $M/spool
log_file_path = $M/log/%slog
pid_file_path = $M/exim.pid
exim_user = $exim_user
exim_group = $(id -gn "$exim_user")
keep_environment =
host_lookup =
rfc1413_hosts =
message_size_limit = 50M
smtp_accept_max = 50
tls_certificate = $M/tls.crt
tls_privatekey = $M/tls.key
tls_advertise_hosts = *
auth_advertise_hosts = \${if eq{\$tls_in_cipher}{}{}{*}}
acl_smtp_mail = acl_check_mail
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_mail:
  deny    message = 530 authentication required
          !authenticated = *
  accept
acl_check_rcpt:
  accept  authenticated = *
  deny    message = relay not permitted

begin routers
maildir_catchall:
  driver = accept
  transport = maildir_delivery

begin transports
maildir_delivery:
  driver = appendfile
  directory = $M/Maildir
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  user = $exim_user
  group = $(id -gn "$exim_user")
  mode = 0644

begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_advertise_condition = \${if def:tls_in_cipher}
  server_prompts = :
  server_condition = \${if and{{eq{\$auth2}{$SMTP_USER}}{eq{\$auth3}{$SMTP_PASSWORD}}}}
  server_set_id = \$auth2
login:
  driver = plaintext
  public_name = LOGIN
  server_advertise_condition = \${if def:tls_in_cipher}
  server_prompts = Username:: : Password::
  server_condition = \${if and{{eq{\$auth1}{$SMTP_USER}}{eq{\$auth2}{$SMTP_PASSWORD}}}}
  server_set_id = \$auth1
EOF
  chmod 644 "$M/exim.conf" "$M/tls.crt"
  chmod 755 "$DIR" "$M" "$M/Maildir" "$M"/Maildir/*
  if is_root; then
    # Exim insists its configuration is root's; everything it writes belongs to its user.
    chown root:root "$M/exim.conf"
    chown -R "$exim_user:" "$M/spool" "$M/log" "$M/Maildir" "$M/tls.key"
    chmod 640 "$M/exim.conf"
    chgrp "$(id -gn "$exim_user")" "$M/exim.conf"
  else
    chmod 600 "$M/exim.conf"
  fi
  exim4 -C "$M/exim.conf" -bV >"$M/log/config-check.log" 2>&1 ||
    { cat "$M/log/config-check.log" >&2; die "exim rejected $M/exim.conf"; }
  launch exim "$M/exim.out" exim4 -C "$M/exim.conf" -bdf
  wait_until "$WAIT_TIMEOUT" "smtp: exim on $HOST:$SMTP_PORT" "$M/exim.out" exim smtp_banner_ehlo
  say "smtp: ready on $HOST:$SMTP_PORT (STARTTLS + AUTH as $SMTP_USER), mail lands in $M/Maildir/new"
}

# ---------------------------------------------------------------------------------------------
# services.json / services.env
# ---------------------------------------------------------------------------------------------
json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

write_outputs() {
  local tmp=$DIR/services.json.tmp
  cat >"$tmp" <<EOF
{
  "dir": $(json_str "$DIR"),
  "s3": {
    "endpoint": $(json_str "http://$HOST:$S3_PORT"),
    "host": $(json_str "$HOST"),
    "port": $S3_PORT,
    "accessKeyId": $(json_str "$S3_ACCESS_KEY"),
    "secretAccessKey": $(json_str "$S3_SECRET_KEY"),
    "region": "default",
    "forcePathStyle": true,
    "provider": "Ceph"
  },
  "sftp": {
    "host": $(json_str "$HOST"),
    "port": $SFTP_PORT,
    "user": $(json_str "$SFTP_USER"),
    "keyFile": $(json_str "$S/id_ed25519"),
    "knownHostsFile": $(json_str "$S/known_hosts"),
    "root": $(json_str "$SFTP_ROOT")
  },
  "smtp": {
    "host": $(json_str "$HOST"),
    "port": $SMTP_PORT,
    "user": $(json_str "$SMTP_USER"),
    "password": $(json_str "$SMTP_PASSWORD"),
    "secure": false,
    "starttls": true,
    "caFile": $(json_str "$M/tls.crt"),
    "maildir": $(json_str "$M/Maildir")
  }
}
EOF
  mv -f "$tmp" "$DIR/services.json"
  tmp=$DIR/services.env.tmp
  {
    echo "# Written by scripts/test-services.sh start; source it: . $DIR/services.env"
    printf 'export %s=%q\n' \
      TEST_SERVICES_DIR "$DIR" \
      TEST_S3_PORT "$S3_PORT" \
      TEST_CEPH_MON_PORT "$MON_PORT" \
      TEST_SFTP_PORT "$SFTP_PORT" \
      TEST_SMTP_PORT "$SMTP_PORT" \
      TEST_S3_ENDPOINT "http://$HOST:$S3_PORT" \
      TEST_S3_ACCESS_KEY_ID "$S3_ACCESS_KEY" \
      TEST_S3_SECRET_ACCESS_KEY "$S3_SECRET_KEY" \
      TEST_S3_REGION default \
      TEST_SFTP_HOST "$HOST" \
      TEST_SFTP_USER "$SFTP_USER" \
      TEST_SFTP_KEY_FILE "$S/id_ed25519" \
      TEST_SFTP_KNOWN_HOSTS_FILE "$S/known_hosts" \
      TEST_SFTP_ROOT "$SFTP_ROOT" \
      TEST_SMTP_HOST "$HOST" \
      TEST_SMTP_USER "$SMTP_USER" \
      TEST_SMTP_PASSWORD "$SMTP_PASSWORD" \
      TEST_SMTP_CA_FILE "$M/tls.crt" \
      TEST_SMTP_MAILDIR "$M/Maildir"
    echo "# rclone remotes 'tests3:' and 'testsftp:' (run rclone with AWS_CA_BUNDLE unset: env -u AWS_CA_BUNDLE rclone ...)"
    printf 'export %s=%q\n' \
      RCLONE_CONFIG_TESTS3_TYPE s3 \
      RCLONE_CONFIG_TESTS3_PROVIDER Ceph \
      RCLONE_CONFIG_TESTS3_ENDPOINT "http://$HOST:$S3_PORT" \
      RCLONE_CONFIG_TESTS3_ACCESS_KEY_ID "$S3_ACCESS_KEY" \
      RCLONE_CONFIG_TESTS3_SECRET_ACCESS_KEY "$S3_SECRET_KEY" \
      RCLONE_CONFIG_TESTS3_REGION default \
      RCLONE_CONFIG_TESTS3_FORCE_PATH_STYLE true \
      RCLONE_CONFIG_TESTSFTP_TYPE sftp \
      RCLONE_CONFIG_TESTSFTP_HOST "$HOST" \
      RCLONE_CONFIG_TESTSFTP_PORT "$SFTP_PORT" \
      RCLONE_CONFIG_TESTSFTP_USER "$SFTP_USER" \
      RCLONE_CONFIG_TESTSFTP_KEY_FILE "$S/id_ed25519" \
      RCLONE_CONFIG_TESTSFTP_KNOWN_HOSTS_FILE "$S/known_hosts"
  } >"$tmp"
  mv -f "$tmp" "$DIR/services.env"
}

# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
lock_dir() {
  mkdir -p "$DIR" "$PIDS"
  DIR=$(cd "$DIR" && pwd -P)
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another test-services.sh holds $DIR/.lock"
}

cmd_start() {
  if [[ -n $(missing_packages) ]]; then cmd_install; fi
  lock_dir
  # Paths depend on the resolved $DIR.
  PIDS=$DIR/pids C=$DIR/ceph CEPH_CONF_FILE=$DIR/ceph/ceph.conf S=$DIR/sftp M=$DIR/smtp
  say "state in $DIR"
  s3_begin
  sftp_start
  smtp_start
  s3_finish
  write_outputs
  say "all services up; wrote $DIR/services.json and $DIR/services.env"
}

cmd_stop() {
  local clean=0
  [[ ${1:-} == --clean ]] && clean=1
  if [[ ! -d $DIR ]]; then
    say "nothing to stop ($DIR does not exist)"
    return 0
  fi
  lock_dir
  PIDS=$DIR/pids
  stop_procs radosgw sshd exim
  stop_procs ceph-osd
  stop_procs ceph-mon
  say "stopped"
  if [[ $clean == 1 ]]; then
    rm -rf "$DIR"
    say "removed $DIR"
  else
    rm -f "$DIR/services.json" "$DIR/services.env"
  fi
}

cmd_status() {
  if [[ ! -d $DIR ]]; then
    echo "not started ($DIR does not exist)"
    return 3
  fi
  DIR=$(cd "$DIR" && pwd -P)
  PIDS=$DIR/pids
  local name pid rss where down=0
  for name in ceph-mon ceph-osd radosgw sshd exim; do
    case $name in
      ceph-mon) where="mon v2:$HOST:$MON_PORT" ;;
      ceph-osd) where="memstore OSD" ;;
      radosgw) where="S3 http://$HOST:$S3_PORT" ;;
      sshd) where="SFTP/rsync ssh://$HOST:$SFTP_PORT" ;;
      exim) where="SMTP $HOST:$SMTP_PORT (STARTTLS)" ;;
    esac
    if pid=$(pid_of "$name"); then
      rss=$(ps -o rss= -p "$pid" | tr -d ' ')
      printf '%-9s running  pid %-7s rss %6d KiB  %s\n' "$name" "$pid" "$rss" "$where"
    else
      printf '%-9s stopped                          %s\n' "$name" "$where"
      down=1
    fi
  done
  if [[ -f $DIR/services.json ]]; then echo "services.json: $DIR/services.json"; fi
  return $((down * 3))
}

cmd_env() {
  [[ -f $DIR/services.env ]] || die "$DIR/services.env not found: run \`bash scripts/test-services.sh start\`"
  cat "$DIR/services.env"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
      echo "usage: $0 install|start|stop [--clean]|status|env" >&2
      exit 2
      ;;
  esac
}

main "$@"
