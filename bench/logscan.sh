#!/usr/bin/env bash
# Log scan: `tollgate logscan` against `fail2ban-regex` with fail2ban's own asterisk filter,
# on the same generated Asterisk log, as whole processes (start-up included).
#
#   bench/logscan.sh      # LINES=1000000 SEED=1 RUNS=5 to change
#
# Builds release once (tollgate, the log generator), writes a LINES-line Asterisk log with
# the generator, checks that the generator, `tollgate logscan --json` (sum of failures) and
# fail2ban-regex ("Failregex: N total") count the same failures (and stops if they do not),
# then runs, RUNS times and in turn, A B C A B C ...:
#   A  tollgate logscan --format asterisk LOG                    (the embedded default policy)
#   B  fail2ban-regex LOG /etc/fail2ban/filter.d/asterisk.conf
#   C  tollgate logscan --format asterisk LOG --config guard.toml (a policy with only [guard],
#      the same jails as the default)
# each under GNU time (peak resident memory, CPU) with its wall time read around it. Prints
# every run, then medians: lines/s, the ratio to fail2ban (median of the per-run ratios,
# so a drift of the machine's speed cancels out), peak memory and its ratio, and whether
# the project's aim is met: at least 50 times fail2ban's lines/s with at most a quarter of
# its peak memory.
set -euo pipefail

LINES=${LINES:-1000000}
SEED=${SEED:-1}
RUNS=${RUNS:-5}
FILTER=/etc/fail2ban/filter.d/asterisk.conf

cd "$(dirname "$0")/.."
if ! command -v fail2ban-regex >/dev/null; then
    [[ $(id -u) == 0 ]] || { echo "fail2ban is missing: apt-get install -y fail2ban (as root)" >&2; exit 1; }
    apt-get install -y fail2ban >/dev/null
fi
[[ -x /usr/bin/time ]] || { echo "GNU time is missing: apt-get install -y time" >&2; exit 1; }
cargo build --release -p tollgate -p tollgate-ingest --bin tollgate --example gen_asterisk_log
BIN=$PWD/target/release

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-logscan.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
LOG=$TMP/asterisk.log

# ---- The log and the counts ------------------------------------------------------------------
"$BIN/examples/gen_asterisk_log" "$LINES" "$SEED" >"$LOG" 2>"$TMP/gen.txt"
generated=$(sed -n 's/^[0-9]* lines, \([0-9]*\) failures.*/\1/p' "$TMP/gen.txt")
echo "log: $(cat "$TMP/gen.txt") ($(du -m "$LOG" | cut -f1) MB)"
echo "fail2ban-regex $(fail2ban-regex --version 2>/dev/null | awk '{print $2; exit}'), filter $FILTER; tollgate $("$BIN/tollgate" --version | awk '{print $2}')"

# The default policy's jails, alone: what logscan needs, without the call-control part.
cat >"$TMP/guard.toml" <<'EOF'
[guard]
allowlist = ["127.0.0.0/8", "::1/128"]
jails = { sip-auth = { maxretry = 5, findtime = "10m", bantime = "1h", bantime_factor = 2, bantime_max = "1w" }, slow-brute-force = { maxretry = 30, findtime = "1d", bantime = "1d" } }
EOF

tollgate_failures() { # tollgate_failures [--config FILE]
    "$BIN/tollgate" logscan --format asterisk "$LOG" --json "$@" | python3 -c '
import json, sys
report = json.load(sys.stdin)
print(sum(s["failures"] for s in report["sources"]))'
}
t_default=$(tollgate_failures)
t_guard=$(tollgate_failures --config "$TMP/guard.toml")
fail2ban-regex "$LOG" "$FILTER" >"$TMP/f2b-check.txt" 2>&1
f2b=$(sed -n 's/^Failregex: \([0-9]*\) total.*/\1/p' "$TMP/f2b-check.txt")
echo "failures: generator $generated, tollgate logscan $t_default (with --config guard.toml: $t_guard), fail2ban-regex $f2b"
if [[ -z $f2b || $t_default != "$f2b" || $t_guard != "$f2b" || $generated != "$f2b" ]]; then
    echo "MISMATCH: the tools do not count the same failures; fail2ban-regex said:" >&2
    head -n 40 "$TMP/f2b-check.txt" >&2
    exit 1
fi
echo

# ---- Timed runs ------------------------------------------------------------------------------
# timed NAME CMD...: runs CMD under GNU time, output thrown away; appends
# "NAME wall_s user_s sys_s peak_kb exit" to $TMP/runs.txt.
timed() {
    local name=$1 start end
    shift
    start=$(date +%s%N)
    /usr/bin/time -f '%U %S %M %x' -o "$TMP/time.txt" "$@" >/dev/null 2>"$TMP/stderr.txt" || true
    end=$(date +%s%N)
    read -r user sys peak code < <(tail -n 1 "$TMP/time.txt")
    if [[ $code != 0 ]]; then
        echo "$name exited with $code:" >&2
        cat "$TMP/stderr.txt" >&2
        exit 1
    fi
    echo "$name $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", (b - a) / 1e9 }') $user $sys $peak" >>"$TMP/runs.txt"
}
: >"$TMP/runs.txt"
printf '%-4s %-36s %-36s %-36s\n' run "tollgate (default policy)" "fail2ban-regex" "tollgate (--config guard.toml)"
for ((run = 1; run <= RUNS; run++)); do
    timed tollgate "$BIN/tollgate" logscan --format asterisk "$LOG"
    timed fail2ban fail2ban-regex "$LOG" "$FILTER"
    timed guard "$BIN/tollgate" logscan --format asterisk "$LOG" --config "$TMP/guard.toml"
    cell() { tail -n 3 "$TMP/runs.txt" | awk -v n="$1" '$1 == n { printf "%7.3f s %5.1f MiB cpu %.2f s", $2, $5 / 1024, $3 + $4 }'; }
    printf '%-4s %-36s %-36s %-36s\n' "$run" "$(cell tollgate)" "$(cell fail2ban)" "$(cell guard)"
done
echo

# ---- Medians -------------------------------------------------------------------------------
col() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$TMP/runs.txt"; }
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { # ratio A B COLUMN: median over runs of B/A (how many times A is faster or smaller)
    paste <(col "$1" "$3") <(col "$2" "$3") | awk '$1 > 0 { print $2 / $1 }' | median
}
f2b_wall=$(col fail2ban 2 | median)
f2b_peak=$(col fail2ban 5 | median)
echo "medians over $RUNS runs (wall time of the whole process; peak = maximum resident set size)"
printf '%-32s %14s %10s %12s %14s\n' "" "lines/s" "speed-up" "peak MiB" "peak / f2b's"
for name in tollgate fail2ban guard; do
    case $name in
        tollgate) title="tollgate, default policy" ;;
        fail2ban) title="fail2ban-regex" ;;
        guard) title="tollgate, --config guard.toml" ;;
    esac
    wall=$(col "$name" 2 | median)
    peak=$(col "$name" 5 | median)
    speed=$(ratio "$name" fail2ban 2)
    mem=$(paste <(col "$name" 5) <(col fail2ban 5) | awk '$2 > 0 { print $1 / $2 }' | median)
    printf '%-32s %14.0f %9.1fx %12.1f %14.3f\n' "$title" "$(awk -v l="$LINES" -v w="$wall" 'BEGIN { print l / w }')" "$speed" "$(awk -v p="$peak" 'BEGIN { print p / 1024 }')" "$mem"
done
for name in tollgate guard; do
    speed=$(ratio "$name" fail2ban 2)
    mem=$(paste <(col "$name" 5) <(col fail2ban 5) | awk '$2 > 0 { print $1 / $2 }' | median)
    awk -v s="$speed" -v m="$mem" -v who="$([[ $name == tollgate ]] && echo "default policy" || echo "--config guard.toml")" 'BEGIN {
        printf "aim (%s): >= 50x fail2ban lines/s: %s (%.1fx); peak <= 1/4 of fail2ban'"'"'s: %s (%.3f)\n",
            who, (s >= 50 ? "met" : "MISSED"), s, (m <= 0.25 ? "met" : "MISSED"), m
    }'
done
echo "(fail2ban-regex median: $f2b_wall s, $(awk -v p="$f2b_peak" 'BEGIN { printf "%.1f", p / 1024 }') MiB)"
