#!/usr/bin/env bash
# ringmx against Postfix on one machine, side by side in one run.
#
#   bench/peers/postfix_compare.sh [--runs N] [--no-install] [--no-docs] [--out DIR]
#
# Runs as root on Debian 12. Installs the `postfix` package if smtp-source/smtp-sink are
# missing (without letting it start a system Postfix, and without ever touching
# /etc/postfix/main.cf), then starts three servers on 127.0.0.1, each once for the whole run:
#   sink     Postfix smtp-sink: reads and throws away, writes nothing (the do-nothing ceiling)
#   postfix  a private Postfix instance (own config, queue and data directories under a temp
#            dir, no chroot, no DNS): smtpd -> cleanup (queue file fsync'd) -> qmgr -> discard
#   ringmx   build/release/tools/ringmx, spool under the same temp dir (same file system)
# and drives each with Postfix's smtp-source, 1 KiB messages, 32 concurrent sessions:
#   load "1/conn"    one message per connection (connect, EHLO/HELO, MAIL, RCPT, DATA, QUIT)
#   load "100/conn"  100 messages per connection: smtp-source -d (keep the connection) in
#                    rounds of -s 32 -m 3200, i.e. 32 connections x 100 messages per round
# Each (server, load) is measured RUNS times (default 3), interleaved, and reported as
# median (min-max). Per run: messages/s (wall clock of smtp-source), server CPU us/message
# (utime+stime+cutime+cstime over the server's whole process tree from /proc, after the
# server's own queue is drained), smtp-source's own CPU, peak sum of VmRSS of the tree,
# sum of Pss after the load, and how many messages really landed. Ratios against ringmx
# are computed inside each repetition (same run), then the median and spread taken.
#
# Environment knobs (defaults in brackets):
#   RUNS [3]  N_FAST [20000] N_POSTFIX [4000]   messages per 1/conn run (sink+ringmx / postfix)
#   ROUNDS_FAST [6] ROUNDS_POSTFIX [2]          rounds of 3200 for the 100/conn load
#   SESSIONS [32] MSG_LEN [1024] SHARDS [nproc] RINGMX [build/release/tools/ringmx]
#   TMP_BASE [/var/spool] where the temp dir (Postfix queue, ringmx spool) is made: its file
#                        system is the one measured (TMP_BASE=/dev/shm: tmpfs, no disk cost)
#   OUT_DIR [/var/tmp/ringmx-postfix-compare.results.XXXXXX]  raw results and logs (kept)
#   DOCS [docs/benchmarks.md]                    rewritten between its GENERATED markers
# Every smtp-source run is under `timeout 120`; every process started here is stopped by
# PID at exit and the temp dir removed (trap). Traffic goes to 127.0.0.1 only.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUNS=${RUNS:-3}
N_FAST=${N_FAST:-20000}
N_POSTFIX=${N_POSTFIX:-4000}
ROUNDS_FAST=${ROUNDS_FAST:-6}
ROUNDS_POSTFIX=${ROUNDS_POSTFIX:-2}
SESSIONS=${SESSIONS:-32}
MSG_LEN=${MSG_LEN:-1024}
PER_CONN=100
SHARDS=${SHARDS:-$(nproc)}
RINGMX=${RINGMX:-$REPO/build/release/tools/ringmx}
DOCS=${DOCS:-$REPO/docs/benchmarks.md}
TMP_BASE=${TMP_BASE:-/var/spool}
SRC_TIMEOUT=120
DO_INSTALL=1
DO_DOCS=1
FROM=a@example.net
TO=b@example.org

while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --no-install) DO_INSTALL=0; shift ;;
    --no-docs) DO_DOCS=0; shift ;;
    --out) OUT_DIR=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'postfix_compare: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (apt-get, a private Postfix master)"

# ---------------------------------------------------------------- install (no system Postfix)
# PIDs of running Postfix masters (any instance), from /proc.
postfix_masters() {
  local d exe
  for d in /proc/[0-9]*; do
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    [[ $exe == */postfix/sbin/master || $exe == */postfix/master ]] && echo "${d#/proc/}"
  done
  return 0
}

install_postfix() {
  local b missing=0
  for b in /usr/sbin/smtp-source /usr/sbin/smtp-sink /usr/sbin/postfix /usr/sbin/postconf; do
    [[ -x $b ]] || missing=1
  done
  if ((missing == 0)); then return 0; fi
  ((DO_INSTALL)) || die "postfix is not installed and --no-install was given"
  log "installing Debian's postfix (smtp-source, smtp-sink); no system instance is started"
  local before created_policy=0
  before=$(postfix_masters | sort)
  # Debconf: "No configuration" = the package writes no /etc/postfix/main.cf, so even a
  # service manager that ignores policy-rc.d has no system instance to start.
  if ! dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q 'install ok installed'; then
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  fi
  # policy-rc.d exit 101 = "do not start services" for invoke-rc.d and deb-systemd-invoke.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  ((rc == 0)) && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null || rc=$?; }
  ((created_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install postfix failed ($rc)"
  local after new
  after=$(postfix_masters | sort)
  new=$(comm -13 <(echo "$before") <(echo "$after") | grep . || true)
  if [[ -n $new ]]; then
    # Not supposed to happen; the install started it, so stop exactly that one, by PID.
    log "WARNING: installing postfix started a system master (PID $new); stopping it by PID"
    local pid
    for pid in $new; do kill -TERM "$pid" || true; done
    sleep 2
  fi
  [[ -z $(comm -13 <(echo "$before") <(postfix_masters | sort) | grep . || true) ]] ||
    die "a system Postfix master is running after the install"
}

# ---------------------------------------------------------------- state, cleanup
TMP=""
SINK_PID="" RINGMX_PID="" PF_CONF="" PF_MASTER="" LOAD_PID="" SAMPLER_PID=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
  if [[ -n $LOAD_PID ]]; then   # the load subshell, its timeout and smtp-source processes
    local p
    for p in $(tree_pids "$LOAD_PID"); do kill "$p" 2>/dev/null; done
    wait "$LOAD_PID" 2>/dev/null
  fi
  if [[ -n $SINK_PID ]]; then
    kill "$SINK_PID" 2>/dev/null
    wait "$SINK_PID" 2>/dev/null
  fi
  if [[ -n $RINGMX_PID ]]; then
    kill -TERM "$RINGMX_PID" 2>/dev/null
    local i
    for i in $(seq 100); do kill -0 "$RINGMX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$RINGMX_PID" 2>/dev/null && kill -KILL "$RINGMX_PID"
    wait "$RINGMX_PID" 2>/dev/null
  fi
  if [[ -n $PF_CONF ]]; then
    postfix -c "$PF_CONF" stop >/dev/null 2>&1
    if [[ -n $PF_MASTER ]]; then
      for i in $(seq 100); do kill -0 "$PF_MASTER" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$PF_MASTER" 2>/dev/null && kill -KILL "$PF_MASTER"
    fi
  fi
  [[ -n $TMP && -d $TMP ]] && rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- /proc accounting
CLK_TCK=$(getconf CLK_TCK)
PAGE_KB=$(($(getconf PAGESIZE) / 1024))

# tree_stat ROOTPID -> "ticks rss_kb nproc user_ticks sys_ticks": utime+stime+cutime+cstime summed over ROOTPID
# and all its live descendants (cutime/cstime carry the CPU of children that already exited
# and were reaped), and the sum of their resident set sizes.
tree_stat() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" -v pk="$PAGE_KB" '
    { pid = $1; s = $0; sub(/^.*\) /, "", s); n = split(s, a, " ")
      ppid[pid] = a[2]; usr[pid] = a[12] + a[14]; sys[pid] = a[13] + a[15]; rss[pid] = a[22] * pk }
    END {
      for (p in ppid) {            # is root an ancestor of p (or p itself)?
        q = p; d = 0
        while (q != "" && q != 0 && q != root && d < 64) { q = ppid[q]; d++ }
        if (q == root) { u += usr[p]; y += sys[p]; r += rss[p]; k++ }
      }
      printf "%d %d %d %d %d\n", u + y, r, k, u, y
    }'
}

# tree_pss ROOTPID -> sum of Pss (kB) over the tree (shared pages counted once overall).
tree_pss() {
  local p total=0 v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^Pss:/ {print $2; exit}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
tree_pids() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
    { s = $0; sub(/^.*\) /, "", s); split(s, a, " "); ppid[$1] = a[2] }
    END { for (p in ppid) { q = p; d = 0
            while (q != "" && q != 0 && q != root && d < 64) { q = ppid[q]; d++ }
            if (q == root) print p } }'
}

# Background sampler: peak tree RSS every 0.5 s into FILE until killed.
start_sampler() {  # start_sampler ROOTPID FILE
  (
    peak=0
    while :; do
      read -r _ r _ < <(tree_stat "$1")
      ((r > peak)) && { peak=$r; echo "$peak" > "$2"; }
      sleep 0.5
    done
  ) &
  SAMPLER_PID=$!
}
stop_sampler() {
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=""
}

port_free() { ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
pick_port() {  # pick_port START -> first port >= START nobody listens on
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}
wait_port() {  # wait_port PORT SECONDS
  local i
  for i in $(seq $(($2 * 10))); do port_free "$1" || return 0; sleep 0.1; done
  return 1
}
now_ns() { date +%s%N; }

# fs_probe DIR -> kernel CPU (us) to create one 1.5 KB file in a fresh directory under DIR:
# what every message costs both servers (each writes one file per message) before any
# fsync. Pure bash builtins in one subshell, so `times` line 1 is the loop alone.
fs_probe() {
  local d=$1/fs-probe
  mkdir -p "$d"
  (
    payload=$(printf '%1500s' '')
    for ((i = 0; i < 2000; i++)); do printf '%s' "$payload" > "$d/$i"; done
    times
  ) | awk 'NR == 1 { x = $2; sub(/s$/, "", x); split(x, mm, "m"); printf "%.0f\n", (mm[1] * 60 + mm[2]) * 1e6 / 2000 }'
  rm -rf "$d"
}
# Busy jiffies of the whole machine (all CPUs, everything but idle and iowait).
machine_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# ---------------------------------------------------------------- start
install_postfix
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
if [[ ! -x $RINGMX ]]; then
  log "no $RINGMX: building the release tree with tools/dev.sh build"
  "$REPO/tools/dev.sh" build
fi
[[ -x $RINGMX ]] || die "ringmx binary not found at $RINGMX"

TMP=$(mktemp -d "$TMP_BASE/ringmx-pfcmp.XXXXXX")
chmod 755 "$TMP"
OUT_DIR=${OUT_DIR:-$(mktemp -d /var/tmp/ringmx-postfix-compare.results.XXXXXX)}
mkdir -p "$OUT_DIR"
RAW=$OUT_DIR/raw.tsv
printf 'rep\tload\tserver\tmsgs\twall_s\tmsgs_per_s\tsrv_cpu_us_per_msg\tclient_cpu_us_per_msg\tclient_busy_pct\trss_peak_mib\tpss_mib\tlanded\tsrc_rc\tdrain_s\trest_busy_pct\tsrv_user_us_per_msg\tsrv_sys_us_per_msg\tnote\n' > "$RAW"

PORT1=$(pick_port 25251)
PORT2=$(pick_port $((PORT1 + 1)))
PORT3=$(pick_port $((PORT2 + 1)))

# (a) smtp-sink: -u is required as root; backlog 1024.
SINK_CMD=(smtp-sink -u nobody -c "127.0.0.1:$PORT1" 1024)
"${SINK_CMD[@]}" > "$TMP/sink.out" 2>&1 &
SINK_PID=$!

# (b) private Postfix instance.
PF=$TMP/postfix
PF_CONF=$PF/etc
PFQ=$PF/queue
mkdir -p "$PF_CONF" "$PFQ" "$PF/data"
chown postfix "$PF/data"
PF_MAILLOG=$PF/maillog
# The same main.cf and master.cf as compare.py's Postfix (bench/peers/private_postfix.py),
# with its process limit of 100.
python3 "$REPO/bench/peers/private_postfix.py" config "$PF_CONF" "$PFQ" "$PF/data" "$PF_MAILLOG" \
  "$PF" "$PORT2" 100
postfix -c "$PF_CONF" check > "$OUT_DIR/postfix-check.log" 2>&1 ||
  { cat "$OUT_DIR/postfix-check.log" >&2; die "postfix check failed for the private instance"; }
postfix -c "$PF_CONF" start > "$OUT_DIR/postfix-start.log" 2>&1 ||
  { cat "$OUT_DIR/postfix-start.log" >&2; die "postfix start failed for the private instance"; }
for _ in $(seq 100); do [[ -s $PFQ/pid/master.pid ]] && break; sleep 0.1; done
PF_MASTER=$(tr -dc 0-9 < "$PFQ/pid/master.pid")
if [[ -z $PF_MASTER ]] || ! kill -0 "$PF_MASTER"; then die "private Postfix master did not start"; fi

# (c) ringmx.
RSPOOL=$TMP/ringmx-spool
RINGMX_CMD=("$RINGMX" --listen "127.0.0.1:$PORT3" --spool-dir "$RSPOOL" --admin-listen ""
  --shards "$SHARDS" --log-level warn)
"${RINGMX_CMD[@]}" > "$OUT_DIR/ringmx.stdout" 2> "$OUT_DIR/ringmx.stderr" &
RINGMX_PID=$!

wait_port "$PORT1" 10 || die "smtp-sink is not listening on $PORT1"
wait_port "$PORT2" 10 || die "Postfix smtpd is not listening on $PORT2"
wait_port "$PORT3" 10 || die "ringmx is not listening on $PORT3 (stderr: $(cat "$OUT_DIR/ringmx.stderr"))"

server_root() { case $1 in sink) echo "$SINK_PID" ;; postfix) echo "$PF_MASTER" ;; ringmx) echo "$RINGMX_PID" ;; esac; }
server_port() { case $1 in sink) echo "$PORT1" ;; postfix) echo "$PORT2" ;; ringmx) echo "$PORT3" ;; esac; }

pf_queue_count() {
  find "$PFQ"/incoming "$PFQ"/active "$PFQ"/deferred "$PFQ"/hold "$PFQ"/maildrop -type f 2>/dev/null | wc -l
}
# Messages, not files: a spool file holds every message of one group commit.
ringmx_count() {
  "$REPO/tools/ringmx-spool" "$RSPOOL" check 2>/dev/null | awk '{print $1 + 0}'
}

SRC_BASE=(smtp-source -s "$SESSIONS" -l "$MSG_LEN" -c -f "$FROM" -t "$TO")

# run_one REP LOAD SERVER: one measured run; appends a row to $RAW.
run_one() {
  local rep=$1 load=$2 server=$3 root port n rounds=1 m cmd_args
  root=$(server_root "$server")
  port=$(server_port "$server")
  kill -0 "$root" 2>/dev/null || { log "$server (PID $root) is gone"; return 1; }
  if [[ $load == 1/conn ]]; then
    [[ $server == postfix ]] && n=$N_POSTFIX || n=$N_FAST
    m=$n
    cmd_args=(-m "$m")
  else
    [[ $server == postfix ]] && rounds=$ROUNDS_POSTFIX || rounds=$ROUNDS_FAST
    m=$((SESSIONS * PER_CONN))
    n=$((m * rounds))
    cmd_args=(-d -m "$m")
  fi
  local tag="r${rep}-${load%%/*}-${server}" out
  out=$OUT_DIR/smtp-source.$tag.log
  local log_off=0
  [[ $server == postfix && -f $PF_MAILLOG ]] && log_off=$(stat -c %s "$PF_MAILLOG")
  local r_before=0
  [[ $server == ringmx ]] && r_before=$(ringmx_count)

  local peakf=$TMP/peak.$tag
  echo 0 > "$peakf"
  local c0 c1 t0 t1 src_rc=0 client_cpu
  local m0 m1 ta tb
  local u0 u1 y0 y1
  read -r c0 _ _ u0 y0 < <(tree_stat "$root")
  m0=$(machine_busy)
  ta=$(now_ns)
  start_sampler "$root" "$peakf"
  t0=$(now_ns)
  # The load: rounds of smtp-source, each under timeout; `times` gives the CPU of the
  # reaped children (timeout -> smtp-source) of this subshell.
  (
    rc=0
    for ((i = 0; i < rounds; i++)); do
      timeout "$SRC_TIMEOUT" "${SRC_BASE[@]}" "${cmd_args[@]}" "127.0.0.1:$port" || { rc=$?; break; }
    done
    times > "$TMP/times.$tag"   # line 2: reaped children (not through a pipe: a subshell)
    exit "$rc"
  ) > "$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || src_rc=$?
  LOAD_PID=""
  t1=$(now_ns)
  client_cpu=$(awk '{ n = split($0, f, " "); s = 0
      for (i = 1; i <= n; i++) { x = f[i]; sub(/s$/, "", x); split(x, mm, "m"); s += mm[1] * 60 + mm[2] }
      print s }' <(sed -n 2p "$TMP/times.$tag" 2>/dev/null) || echo 0)

  # Server-side completion: Postfix must still deliver (discard) what it queued.
  local drain_s=0 note="" landed t2
  if [[ $server == postfix ]]; then
    local i
    for ((i = 0; i < 1200; i++)); do (($(pf_queue_count) == 0)) && break; sleep 0.1; done
    t2=$(now_ns)
    drain_s=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    (($(pf_queue_count) == 0)) || note="queue not empty after 120 s;"
    sleep 1   # postlogd lines arrive by datagram
  fi
  read -r c1 _ _ u1 y1 < <(tree_stat "$root")
  m1=$(machine_busy)
  tb=$(now_ns)
  local pss
  pss=$(tree_pss "$root")
  stop_sampler

  local sent  # smtp-source's -c counter (restarts at each round)
  sent=$(tr '\r' '\n' < "$out" | awk '/^[0-9]+$/ { if ($1 + 0 < last) tot += last; last = $1 + 0 }
                                        END { print tot + last }')
  case $server in
    sink) landed=$sent; note+="landed = smtp-source count;" ;;
    postfix)
      landed=$(tail -c +$((log_off + 1)) "$PF_MAILLOG" | grep -c 'relay=none, .*status=sent' || true)
      local errs
      errs=$(tail -c +$((log_off + 1)) "$PF_MAILLOG" | grep -cE 'warning|error|fatal|panic' || true)
      ((errs > 0)) && note+="$errs warning/error lines in maillog;"
      ;;
    ringmx)
      landed=$(($(ringmx_count) - r_before))
      local tmps
      tmps=$(find "$RSPOOL" -name '*.tmp' -type f | wc -l)
      ((tmps > 0)) && note+="$tmps .tmp files left;"
      ;;
  esac
  local bad=0
  ((src_rc != 0 || sent != n || landed != n)) && bad=1
  ((src_rc != 0)) && note+="smtp-source exit $src_rc ($(tr '\r' '\n' < "$out" | grep -v '^[0-9]*$' | tail -3 | tr '\n' ' '));"
  ((sent != n)) && note+="smtp-source counted $sent of $n;"
  ((landed != n)) && note+="landed $landed of $n;"

  awk -v rep="$rep" -v load="$load" -v srv="$server" -v n="$n" -v t0="$t0" -v t1="$t1" \
      -v ticks=$((c1 - c0)) -v hz="$CLK_TCK" -v ccpu="$client_cpu" -v peak="$(cat "$peakf")" \
      -v pss="$pss" -v landed="$landed" -v rc="$src_rc" -v drain="$drain_s" -v note="$note" \
      -v mt=$((m1 - m0)) -v ta="$ta" -v tb="$tb" -v ncpu="$(nproc)" -v ut=$((u1 - u0)) -v st=$((y1 - y0)) 'BEGIN {
        w = (t1 - t0) / 1e9
        # machine busy over [ta, tb] less this server and the client: other processes and
        # kernel threads (journal, writeback, ksoftirqd), as % of all CPUs
        rest = (mt - ticks) / hz - ccpu; if (rest < 0) rest = 0
        printf "%s\t%s\t%s\t%d\t%.3f\t%.0f\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%d\t%d\t%s\t%.0f\t%.1f\t%.1f\t%s\n",
          rep, load, srv, n, w, n / w, ticks / hz * 1e6 / n, ccpu * 1e6 / n, 100 * ccpu / w,
          peak / 1024, pss / 1024, landed, rc, drain, 100 * rest / ((tb - ta) / 1e9 * ncpu),
          ut / hz * 1e6 / n, st / hz * 1e6 / n, note }' >> "$RAW"
  tail -1 "$RAW" | awk -F'\t' '{ printf "   %-8s %-8s rep %s: %6d msgs %7.3f s %6s msg/s  server %6s us/msg  client %5s us/msg (%s%% busy)  peak RSS %s MiB  landed %s  rest of machine %s%% %s\n",
      $3, $2, $1, $4, $5, $6, $7 " (usr " $16 " sys " $17 ")", $8, $9, $10, $12, $15, $18 }' >&2

  # ringmx's spool is left as it is: it appends to open segment files, so
  # deleting them under it would lose what it writes next; landed counts the
  # records added by this run.
  sleep 1
  return "$bad"
}

# ---------------------------------------------------------------- machine facts
RINGMX_VERSION=$("$RINGMX" --version 2>&1 | head -1)
PF_VERSION=$(postconf -c "$PF_CONF" -h mail_version 2>/dev/null || postconf -d -h mail_version)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
FS_TYPE=$(findmnt -n -o FSTYPE --target "$TMP" 2>/dev/null || stat -f -c %T "$TMP")
FS_SRC=$(findmnt -n -o SOURCE --target "$TMP" 2>/dev/null || echo "?")
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc: $(nproc); cpu: $CPU_MODEL; memory: $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel: $(uname -sr); $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)"
  echo "spool file system: $FS_TYPE on $FS_SRC ($TMP_BASE)"
  echo "postconf mail_version: $PF_VERSION; ringmx --version: $RINGMX_VERSION"
  echo "net.ipv4.tcp_tw_reuse=$(sysctl -n net.ipv4.tcp_tw_reuse 2>/dev/null); ip_local_port_range=$(sysctl -n net.ipv4.ip_local_port_range 2>/dev/null | tr '\t' '-')"
} > "$OUT_DIR/machine.txt"
FS_PROBE_START=$(fs_probe "$TMP")
log "machine"; sed 's/^/   /' "$OUT_DIR/machine.txt" >&2
log "servers: sink :$PORT1 (PID $SINK_PID), postfix :$PORT2 (master PID $PF_MASTER), ringmx :$PORT3 (PID $RINGMX_PID)"

# Warm-up (not measured): a few messages to each, so Postfix has its daemons forked.
for s in sink postfix ringmx; do
  if ! timeout 30 smtp-source -s 4 -l "$MSG_LEN" -m 200 -f "$FROM" -t "$TO" "127.0.0.1:$(server_port $s)" \
    > "$OUT_DIR/warmup.$s.log" 2>&1; then
    tail -5 "$OUT_DIR/warmup.$s.log" >&2
    [[ $s == postfix ]] && grep -E 'warning|fatal|panic' "$PF_MAILLOG" | tail -5 >&2
    die "warm-up against $s failed"
  fi
done
for ((i = 0; i < 600; i++)); do (($(pf_queue_count) == 0)) && break; sleep 0.1; done
sleep 1

# ---------------------------------------------------------------- the runs
FAILED=0
for ((rep = 1; rep <= RUNS; rep++)); do
  for load in 1/conn 100/conn; do
    for server in sink postfix ringmx; do
      log "rep $rep/$RUNS, load $load, $server"
      run_one "$rep" "$load" "$server" || FAILED=1
    done
  done
done
FS_PROBE_END=$(fs_probe "$TMP")
echo "file creation (1.5 KB, fresh dir, kernel CPU): $FS_PROBE_START us at start, $FS_PROBE_END us at end" >> "$OUT_DIR/machine.txt"
kill -0 "$RINGMX_PID" 2>/dev/null || { FAILED=1; log "ringmx exited during the run: $(tail -5 "$OUT_DIR/ringmx.stderr")"; }
cp "$TMP/sink.out" "$OUT_DIR/smtp-sink.out" 2>/dev/null || true
tail -n 300 "$PF_MAILLOG" > "$OUT_DIR/postfix-maillog.tail" 2>/dev/null || true
grep -E 'warning|error|fatal|panic' "$PF_MAILLOG" | head -200 > "$OUT_DIR/postfix-maillog.problems" 2>/dev/null || true
postqueue -c "$PF_CONF" -p > "$OUT_DIR/postfix-mailq.txt" 2>&1 || true

# ---------------------------------------------------------------- the table
# med_spread: median (min-max) of a column per (load, server); ratios per rep against ringmx.
make_table() {
  awk -F'\t' '
    function med(list,   n, v, i, j, t) {
      n = split(list, v, " ")
      for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
      MIN = v[1]; MAX = v[n]
      return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function ms(list, fmt,   m) { m = med(list); return sprintf(fmt " (" fmt "–" fmt ")", m, MIN, MAX) }
    NR == 1 { next }
    { k = $2 SUBSEP $3; rate[k] = rate[k] " " $6; cpu[k] = cpu[k] " " $7; cl[k] = cl[k] " " $8
      busy[k] = busy[k] " " $9; rss[k] = rss[k] " " $10; pss[k] = pss[k] " " $11; rest[k] = rest[k] " " $15
      if ($16 + $17 > 0) sysf[k] = sysf[k] " " 100 * $17 / ($16 + $17)
      landed[k] += $12; msgs[k] += $4; n[k] = $4
      R[$1, $2, $3] = $6; C[$1, $2, $3] = $7; reps[$1] = 1 }
    END {
      print "| load | server | msgs/run | msgs/s | server CPU µs/msg; sys % | ringmx msgs/s ÷ this | this CPU/msg ÷ ringmx | smtp-source CPU µs/msg; busy % | peak ΣRSS MiB | ΣPss MiB | landed / sent | rest of machine busy % |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      split("1/conn 100/conn", loads, " "); split("sink postfix ringmx", srvs, " ")
      for (li = 1; li <= 2; li++) for (si = 1; si <= 3; si++) {
        L = loads[li]; S = srvs[si]; k = L SUBSEP S
        if (!(k in rate)) continue
        rr = ""; cr = ""
        for (r in reps) if (((r, L, S) in R) && ((r, L, "ringmx") in R) && R[r, L, S] > 0 && C[r, L, "ringmx"] > 0) {
          rr = rr " " R[r, L, "ringmx"] / R[r, L, S]; cr = cr " " C[r, L, S] / C[r, L, "ringmx"] }
        ratio_r = (S == "ringmx") ? "1" : (rr == "" ? "–" : ms(rr, "%.2f"))
        ratio_c = (S == "ringmx") ? "1" : (cr == "" ? "–" : ms(cr, "%.2f"))
        printf "| %s | %s | %d | %s | %s; %.0f %% | %s | %s | %s; %.0f %% | %s | %s | %d / %d | %.0f |\n", L, S, n[k],
          ms(rate[k], "%.0f"), ms(cpu[k], "%.0f"), med(sysf[k]), ratio_r, ratio_c, ms(cl[k], "%.0f"), med(busy[k]),
          ms(rss[k], "%.1f"), ms(pss[k], "%.1f"), landed[k], msgs[k], med(rest[k])
      }
    }' "$RAW"
}
TABLE=$(make_table)

SRC_CMD_1="timeout $SRC_TIMEOUT ${SRC_BASE[*]} -m N 127.0.0.1:PORT"
SRC_CMD_100="for each of R rounds: timeout $SRC_TIMEOUT ${SRC_BASE[*]} -d -m $((SESSIONS * PER_CONN)) 127.0.0.1:PORT"
REPORT=$(cat <<EOF
Generated by \`bench/peers/postfix_compare.sh\` (RUNS=$RUNS), $(date -u '+%Y-%m-%d').

Machine: $(sed -n 2p "$OUT_DIR/machine.txt"); $(sed -n 3p "$OUT_DIR/machine.txt");
$(sed -n 4p "$OUT_DIR/machine.txt"); $(sed -n 5p "$OUT_DIR/machine.txt").
Platform probe: creating one 1.5 KB file (no fsync) in a fresh directory of that file system
cost $FS_PROBE_START µs of kernel CPU at the start of the run and $FS_PROBE_END µs at the end. Both
servers create at least one file per message, and that kernel time is charged to them.

Each cell: median (min–max) over $RUNS runs. Ratios are taken inside each run (same repetition,
same minute) and then summarised. "1/conn" = one message per connection, N = $N_FAST
(sink, ringmx) or $N_POSTFIX (postfix); "100/conn" = smtp-source \`-d\` (keep the connection)
in rounds of $SESSIONS sessions × $PER_CONN messages, $ROUNDS_FAST rounds (sink, ringmx) or
$ROUNDS_POSTFIX (postfix). Messages are $MSG_LEN bytes of payload plus smtp-source's headers.

$TABLE

- msgs/s: messages ÷ wall clock of smtp-source (all rounds). For Postfix this is the rate
  at which smtpd accepted (cleanup fsync'd the queue file); delivery to \`discard\` continues
  after, and its CPU is counted: the CPU figure is read once the queue is empty.
- server CPU: utime+stime+cutime+cstime from /proc/PID/stat summed over the server's process
  tree (smtp-sink: one process; Postfix: master and every child — smtpd, cleanup, qmgr,
  trivial-rewrite, discard, anvil, postlogd …, exited children via the master's cutime;
  ringmx: one process, all shard and io_uring worker threads). Kernel work done outside the
  tree (ext4 journal, writeback, softirq) is not counted for anybody.
- sys %: the kernel's share (stime) of the server CPU, median.
- smtp-source CPU: user+sys of the load generator itself (bash \`times\` of its subshell);
  busy % = its CPU ÷ wall clock: near 100 % means the one-process client is the limit.
- peak ΣRSS: highest sum of VmRSS over the tree, sampled every 0.5 s (Postfix's many
  processes share their libraries, so ΣRSS overstates it; ΣPss, read after the load, does not).
- rest of machine busy %: CPU time of the whole machine (/proc/stat) during the run that is
  neither the server's nor smtp-source's, as % of all $(nproc) CPUs: other tenants' processes
  and kernel threads (ext4 journal, writeback, ksoftirqd). High values mean a noisy run.
- landed: ringmx = new messages (records) in its spool (\`tools/ringmx-spool check\`); postfix = \`status=sent\` lines of the
  discard transport in its maillog (and the queue was empty); sink = smtp-source's count.

Commands (ports picked free at start; PORT1 sink, PORT2 postfix, PORT3 ringmx):

\`\`\`
$(printf '%q ' "${SINK_CMD[@]}" | sed 's/ $//')
postfix -c \$TMP/postfix/etc start      # main.cf / master.cf: see the script
$(printf '%q ' "${RINGMX_CMD[@]}" | sed "s|$TMP|\$TMP|g; s|$REPO/||; s/ \$//")
load 1/conn:   $SRC_CMD_1
load 100/conn: $SRC_CMD_100
\`\`\`

Postfix main.cf and master.cf of the private instance: \`bench/peers/private_postfix.py\`
(the one compare.py and the tests use), default_process_limit = 100: no DNS, everything to
\`discard\`, every master.cf service with chroot = n, \`maillog_file\` through postlogd.
EOF
)
printf '\n%s\n' "$REPORT"
echo
echo "raw results and logs: $OUT_DIR"
printf '%s\n' "$REPORT" > "$OUT_DIR/report.md"

if ((DO_DOCS)); then
  BEGIN_MARK='<!-- BEGIN GENERATED: bench/peers/postfix_compare.sh rewrites everything up to the END marker -->'
  END_MARK='<!-- END GENERATED: bench/peers/postfix_compare.sh -->'
  if [[ ! -f $DOCS ]]; then
    mkdir -p "$(dirname "$DOCS")"
    printf '# Benchmarks\n\n## ringmx against Postfix (smtp-source, loopback)\n\n%s\n%s\n' "$BEGIN_MARK" "$END_MARK" > "$DOCS"
  fi
  if ! grep -qF "$BEGIN_MARK" "$DOCS" || ! grep -qF "$END_MARK" "$DOCS"; then
    printf '\n## ringmx against Postfix (smtp-source, loopback)\n\n%s\n%s\n' "$BEGIN_MARK" "$END_MARK" >> "$DOCS"
  fi
  printf '%s\n' "$REPORT" > "$TMP/report.md"
  awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v f="$TMP/report.md" '
    $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip' "$DOCS" > "$TMP/docs.new"
  cat "$TMP/docs.new" > "$DOCS"
  log "table written to $DOCS"
fi
((FAILED == 0)) || { log "some runs failed: see notes in $RAW"; exit 1; }
