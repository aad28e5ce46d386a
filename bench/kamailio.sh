#!/usr/bin/env bash
# Kamailio's call rate with and without tollgate in the path, on this machine, in one run:
# SIPp calls (INVITE, 407, INVITE with digest credentials, 200, ACK, BYE, 200) through
# Kamailio running examples/kamailio/tollgate-calls.cfg (tollgate asked before every call,
# answer and end reported, request counts flushed every second) and through
# bench/kamailio/baseline.cfg (the same routing without tollgate), at the same SIPp rate
# steps, alternating the two, ROUNDS times.
#
#   bench/kamailio.sh    # ROUNDS=3 RATES="300 400 ... 1400" STEP_SECONDS=5 SETTLE_SECONDS=3 CHILDREN=8
#                        # EXTENSIONS=100 CONFIG=examples/kamailio/tollgate-calls.cfg DEFINES= to change
#
# Needs root, iproute2, kamailio, kamailio-utils-modules, kamailio-extra-modules,
# sip-tester, curl. Everything runs in a network namespace created for the run
# (tg-kambench-PID, only its loopback up, deleted on exit, also on failure): Kamailio on
# 127.0.0.1:5060, tollgate on 127.0.0.1:8480, the phones (SIPp UAC) on 127.0.0.2, the
# callee (SIPp UAS) on 127.0.0.3:5090. Every program runs under `timeout`; every step is
# bounded in calls (rate x STEP_SECONDS) and in time.
#
# Per step it prints the calls/s completed (successful calls / SIPp's elapsed time), the
# failed calls, the set-up time (INVITE with credentials -> 200, from SIPp's response-time
# trace) p50/p99, the CPU time per call of Kamailio and of tollgate, and, with tollgate,
# its decision time p99 under that load (its /metrics histogram tollgate_authorize_seconds,
# as the upper bound of the bucket that holds the 99th percentile). Then the highest clean
# rate of each (every call of the step successful and at least 95 % of the rate asked),
# median over the rounds, and their ratio. A run stops at its first step that is not
# clean (the higher ones would only pile retransmissions on an overloaded system).
#
# Aim stated by the project: tollgate costs Kamailio less than 10 % of its call rate.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RATES=${RATES:-"300 400 500 600 700 800 900 1000 1200 1400"}
STEP_SECONDS=${STEP_SECONDS:-5}
EXTENSIONS=${EXTENSIONS:-100}
CHILDREN=${CHILDREN:-8}
KAMAILIO_MEMORY_MB=${KAMAILIO_MEMORY_MB:-1024}
# Quiet time after each step (retransmissions and transactions draining).
SETTLE_SECONDS=${SETTLE_SECONDS:-3}
# The configuration with tollgate (a variant of the example, to compare), and names to
# #!define before it (e.g. DEFINES=TOLLGATE_NO_ANSWER_REPORT).
CONFIG=${CONFIG:-examples/kamailio/tollgate-calls.cfg}
DEFINES=${DEFINES:-}
AIM_COST_PCT=10

CONFIG=$(realpath "$CONFIG")
cd "$(dirname "$0")/.."
ROOT=$PWD
[[ $(id -u) == 0 ]] || { echo "needs root (network namespace)" >&2; exit 1; }
for tool in ip kamailio sipp curl timeout awk; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install -y iproute2 kamailio sip-tester curl)" >&2; exit 1; }
done
for module in http_client:kamailio-utils-modules jansson:kamailio-extra-modules; do
    found=
    for file in /usr/lib/*/kamailio/modules/"${module%%:*}".so /usr/lib/kamailio/modules/"${module%%:*}".so; do
        [[ -f $file ]] && found=1
    done
    [[ -n $found ]] || { echo "Kamailio's ${module%%:*} module is missing (apt-get install -y ${module#*:})" >&2; exit 1; }
done
((STEP_SECONDS >= 1 && STEP_SECONDS <= 60 && ROUNDS >= 1 && ROUNDS <= 10 && EXTENSIONS >= 1 && EXTENSIONS <= 1000)) \
    || { echo "STEP_SECONDS 1-60, ROUNDS 1-10, EXTENSIONS 1-1000" >&2; exit 1; }
for rate in $RATES; do
    ((rate >= 1 && rate <= 10000)) || { echo "rates are 1-10000 calls/s" >&2; exit 1; }
done
cargo build --release -p tollgate --bin tollgate
BIN=$ROOT/target/release

NS=tg-kambench-$$
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-kambench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

# ---- tollgate --------------------------------------------------------------------------
{
    cat <<'EOF'
[[tokens]]
name = "pbx"
scopes = ["calls"]
file = "pbx.token"
[[tokens]]
name = "reader"
scopes = ["read"]
file = "reader.token"

[plans.std]
currency = "EUR"
rates = [
  { prefix = "+33", description = "France", price_per_minute = "0.01", increments = "1/1" },
]

[accounts.bench]
country = "FR"
time_zone = "Europe/Paris"
plan = "std"
limits = { daily = "1000000.00", monthly = "10000000.00" }

# The phones flood by design: never banned.
[guard]
allowlist = ["127.0.0.0/8"]

[firewall]
backend = "none"
EOF
    for ((i = 0; i < EXTENSIONS; i++)); do
        printf '\n[extensions.%d]\naccount = "bench"\nallowed_cidrs = ["127.0.0.0/8"]\nlimits = { daily = "100000.00", monthly = "1000000.00" }\n' $((2000 + i))
    done
} >"$TMP/policy.toml"
(cd "$TMP" && timeout 1800 ip netns exec "$NS" "$BIN/tollgate" serve --config policy.toml \
    --listen 127.0.0.1:8480 --database tollgate.db >tollgate.out 2>tollgate.log) &
PIDS+=($!)
for _ in $(seq 100); do grep -q "^listening on" "$TMP/tollgate.out" 2>/dev/null && break; sleep 0.1; done
grep -q "^listening on" "$TMP/tollgate.out" || { echo "tollgate did not start:" >&2; cat "$TMP/tollgate.log" >&2; exit 1; }
PBX_TOKEN=$(cat "$TMP/pbx.token")
READER_TOKEN=$(cat "$TMP/reader.token")

# ---- subscribers, Kamailio configurations, SIPp input ------------------------------------
mkdir -p "$TMP/dbtext"
printf 'id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n' >"$TMP/dbtext/version"
{
    printf 'id(int,auto) username(string) domain(string) password(string) \n'
    for ((i = 0; i < EXTENSIONS; i++)); do printf '%d:%d:127.0.0.1:bench-%d-pw\n' $((i + 1)) $((2000 + i)) $((2000 + i)); done
} >"$TMP/dbtext/subscriber"
{
    echo "SEQUENTIAL"
    for ((i = 0; i < EXTENSIONS; i++)); do
        ext=$((2000 + i))
        echo "$ext;0142685300;[authentication username=$ext password=bench-$ext-pw]"
    done
} >"$TMP/calls.csv"
wrapper() { # mode file
    cat <<EOF
#!KAMAILIO
#!define TOLLGATE_URL "http://127.0.0.1:8480"
#!define TOLLGATE_TOKEN "$PBX_TOKEN"
#!define DBURL "text://$TMP/dbtext"
#!define PSTN_GATEWAY "sip:127.0.0.3:5090"
#!define PSTN_GATEWAY_IP "127.0.0.3"
#!define KAMAILIO_CHILDREN $CHILDREN
$(if [[ $1 == tollgate ]]; then for name in $DEFINES; do echo "#!define $name"; done; fi)
listen=udp:127.0.0.1:5060
include_file "$2"
EOF
}
wrapper tollgate "$CONFIG" >"$TMP/tollgate.cfg"
wrapper baseline "$ROOT/bench/kamailio/baseline.cfg" >"$TMP/baseline.cfg"

# ---- the callee --------------------------------------------------------------------------
(cd "$TMP" && timeout 1800 ip netns exec "$NS" sipp -sf "$ROOT/crates/tollgate/tests/e2e/callee_uas.xml" \
    -i 127.0.0.3 -p 5090 -nostdin -default_behaviors all,-abortunexp >/dev/null 2>&1) &
PIDS+=($!)

# ---- helpers -----------------------------------------------------------------------------
KAMAILIO_PID=
start_kamailio() { # mode
    mkdir -p "$TMP/run-$1"
    timeout 1800 ip netns exec "$NS" kamailio -f "$TMP/$1.cfg" -DD -E -m "$KAMAILIO_MEMORY_MB" -M 64 \
        -Y "$TMP/run-$1" >/dev/null 2>>"$TMP/kamailio-$1.log" &
    KAMAILIO_PID=$!
    PIDS+=("$KAMAILIO_PID")
    # Up when it answers an OPTIONS keepalive.
    printf 'SEQUENTIAL\nx\n' >"$TMP/probe.csv"
    for _ in $(seq 50); do
        if (cd "$TMP" && timeout 5 ip netns exec "$NS" sipp 127.0.0.1:5060 -sf "$ROOT/crates/tollgate/tests/e2e/options.xml" \
            -inf probe.csv -i 127.0.0.2 -m 1 -recv_timeout 300 -nostdin >/dev/null 2>&1); then
            return 0
        fi
        sleep 0.2
    done
    echo "Kamailio ($1) did not answer" >&2
    tail -20 "$TMP/kamailio-$1.log" >&2
    exit 1
}
stop_kamailio() {
    kill "$KAMAILIO_PID" 2>/dev/null || true
    wait "$KAMAILIO_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        pgrep_ns kamailio >/dev/null || return 0
        sleep 0.1
    done
    for pid in $(pgrep_ns kamailio); do kill -9 "$pid" 2>/dev/null || true; done
}
pgrep_ns() { # program: pids of that program in the namespace
    local pid found=1
    for pid in $(ip netns pids "$NS"); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]; then echo "$pid"; found=0; fi
    done
    return $found
}
cpu_ticks() { # program: utime+stime of all its processes, in clock ticks
    local pid total=0 t
    for pid in $(pgrep_ns "$1" || true); do
        t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)
metrics() { in_ns curl -s --max-time 5 http://127.0.0.1:8480/metrics | grep '^tollgate_authorize_seconds_' || true; }
# p99 of a histogram delta: the upper bound of the bucket holding the 99th percentile.
histogram_p99() { # before after
    awk -v before="$1" -v after="$2" 'BEGIN {
        n = split(before, b, "\n"); for (i = 1; i <= n; i++) { split(b[i], f, " "); old[f[1]] = f[2] }
        n = split(after, a, "\n"); for (i = 1; i <= n; i++) { split(a[i], f, " "); new[f[1]] = f[2]; order[i] = f[1] }
        count = new["tollgate_authorize_seconds_count"] - old["tollgate_authorize_seconds_count"]
        sum = new["tollgate_authorize_seconds_sum"] - old["tollgate_authorize_seconds_sum"]
        if (count <= 0) { print "-"; exit }
        for (i = 1; i <= n; i++) {
            k = order[i]
            if (k !~ /_bucket/) continue
            if (new[k] - old[k] >= 0.99 * count) {
                le = k; sub(/.*le="/, "", le); sub(/".*/, "", le)
                if (le == "+Inf") printf "> 100 ms"; else printf "<= %g ms", le * 1000
                printf " (mean %.2f ms, %d decisions)\n", sum / count * 1000, count
                exit
            }
        }
    }'
}

RESULTS=$TMP/results.txt
: >"$RESULTS"
run_step() { # mode rate round
    local mode=$1 rate=$2 round=$3 dir calls stat rtt k0 k1 t0 t1 before after p99
    dir=$TMP/step-$mode-$rate-$round
    mkdir -p "$dir"
    calls=$((rate * STEP_SECONDS))
    [[ $mode == tollgate ]] && before=$(metrics)
    k0=$(cpu_ticks kamailio)
    t0=$(cpu_ticks tollgate)
    (cd "$dir" && timeout $((STEP_SECONDS + 60)) ip netns exec "$NS" sipp 127.0.0.1:5060 \
        -sf "$ROOT/bench/kamailio/uac.xml" -inf "$TMP/calls.csv" -i 127.0.0.2 -p 5070 \
        -r "$rate" -m "$calls" -l $((rate * 2)) -recv_timeout 5000 -timeout $((STEP_SECONDS + 45))s \
        -default_behaviors all,-abortunexp -nostdin \
        -trace_stat -stf stat.csv -fd 3600 -trace_rtt -rtt_freq 1 >/dev/null 2>&1) || true
    k1=$(cpu_ticks kamailio)
    t1=$(cpu_ticks tollgate)
    p99=-
    if [[ $mode == tollgate ]]; then
        after=$(metrics)
        p99=$(histogram_p99 "$before" "$after")
    fi
    stat=$dir/stat.csv
    rtt=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1 || true)
    # The last line of SIPp's statistics: elapsed time, successful and failed calls.
    awk -F';' -v mode="$mode" -v rate="$rate" -v round="$round" -v calls="$calls" \
        -v kam=$((k1 - k0)) -v tg=$((t1 - t0)) -v hz="$HZ" -v p99="$p99" -v rtt="$rtt" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        { last = $0 }
        END {
            split(last, f, ";")
            split(f[col["ElapsedTime(C)"]], e, ":")
            elapsed = e[1] * 3600 + e[2] * 60 + e[3] + e[4] / 1000000
            ok = f[col["SuccessfulCall(C)"]] + 0
            failed = f[col["FailedCall(C)"]] + 0
            cmd = "awk -F\";\" '\''NR > 1 && $3 == 1 { print $2 }'\'' " rtt " 2>/dev/null | sort -g"
            n = 0
            while ((cmd | getline v) > 0) { n++; times[n] = v }
            close(cmd)
            p50 = n ? times[int(n * 0.5) + (n * 0.5 > int(n * 0.5))] : -1
            p99s = n ? times[int(n * 0.99) + (n * 0.99 > int(n * 0.99))] : -1
            printf "%s %d %d %d %d %d %.3f %.3f %.3f %.3f %.3f | %s\n", mode, rate, round, calls, ok, failed, elapsed,
                p50, p99s, (ok + failed ? kam / hz / (ok + failed) * 1e6 : 0), (ok + failed ? tg / hz / (ok + failed) * 1e6 : 0), p99
        }' "$stat" >>"$RESULTS"
    tail -n1 "$RESULTS" | awk '{
        achieved = $7 > 0 ? $5 / $7 : 0
        split($0, parts, " [|] ")
        tg = $1 == "tollgate" ? sprintf(", tollgate CPU %.0f us/call, decision p99 %s", $11, parts[2]) : ""
        printf "  round %d %-8s %5d calls/s asked: %7.1f calls/s completed, %d of %d failed, set-up p50/p99 %.1f/%.1f ms, Kamailio CPU %.0f us/call%s\n",
            $3, $1, $2, achieved, $6, $4, $8, $9, $10, tg
    }'
}

echo "Kamailio $(kamailio -v | head -1 | awk '{print $3}'), SIPp $(sipp -v 2>/dev/null | grep -o 'v[0-9.]*' | head -1), $(nproc) cores, $CHILDREN workers, $EXTENSIONS extensions, ${STEP_SECONDS} s per step"
echo "with tollgate: ${CONFIG#$ROOT/}${DEFINES:+ with #!define $DEFINES}"
for ((round = 1; round <= ROUNDS; round++)); do
    # Alternate which goes first, so that a drift of the machine does not favour one.
    if ((round % 2)); then order="baseline tollgate"; else order="tollgate baseline"; fi
    for mode in $order; do
        start_kamailio "$mode"
        for rate in $RATES; do
            run_step "$mode" "$rate" "$round"
            # Past the first step that is not clean the system is overloaded: higher rates
            # only pile more retransmissions on it (and would disturb the next run).
            if tail -n1 "$RESULTS" | awk '{ exit !($6 > 0 || $7 <= 0 || $5 / $7 < 0.95 * $2) }'; then
                echo "  round $round $mode: overloaded at $rate calls/s, higher rates skipped"
                break
            fi
            sleep "$SETTLE_SECONDS"
        done
        stop_kamailio
        sleep "$SETTLE_SECONDS"
    done
done

# ---- summary -----------------------------------------------------------------------------
echo
echo "medians over $ROUNDS rounds (calls/s completed, failed calls; set-up p99):"
printf '  %8s   %-34s %-34s %s\n' "asked" "baseline (no tollgate)" "tollgate in the path" "tollgate decision p99"
for rate in $RATES; do
    line() { # mode
        awk -v mode="$1" -v rate="$rate" '$1 == mode && $2 == rate { print ($7 > 0 ? $5 / $7 : 0), $6, $9 }' "$RESULTS" | sort -g | awk '
            { a[NR] = $1; f[NR] = $2; s[NR] = $3 }
            END { if (NR == 0) { printf "%7s (not run: overloaded below)", "-"; exit }
                  m = int((NR + 1) / 2); printf "%7.1f, %4d failed, %6.1f ms", a[m], f[m], s[m]; if (NR < rounds) printf " (%d of %d runs)", NR, rounds }' rounds="$ROUNDS"
    }
    p99=$(awk -v rate="$rate" '$1 == "tollgate" && $2 == rate { split($0, parts, " [|] "); print parts[2] }' "$RESULTS" | tail -n1)
    printf '  %8d   %-34s %-34s %s\n' "$rate" "$(line baseline)" "$(line tollgate)" "$p99"
done
# Highest clean rate per round: every call successful and >= 95 % of the rate asked.
clean() { # mode -> median over rounds
    for ((round = 1; round <= ROUNDS; round++)); do
        awk -v mode="$1" -v round="$round" '$1 == mode && $3 == round && $6 == 0 && $7 > 0 && $5 / $7 >= 0.95 * $2 && $5 == $4 { if ($2 > best) best = $2 }
            END { print best + 0 }' "$RESULTS"
    done | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
# CPU per call, steadier than the clean rates on a noisy machine: over the steps that both
# ran clean in the same round, the medians of Kamailio's CPU per call (baseline) and of
# Kamailio's plus tollgate's (with tollgate). When the CPU is what limits the call rate (as
# on a machine where Kamailio and tollgate share the cores), their ratio predicts the rate.
cpu_pairs=$(awk '
    $6 == 0 && $7 > 0 && $5 / $7 >= 0.95 * $2 && $5 == $4 { key = $2 " " $3; if ($1 == "baseline") b[key] = $10; else { k[key] = $10; t[key] = $11 } }
    END { for (key in b) if (key in k) print b[key], k[key], t[key], k[key] + t[key] }' "$RESULTS")
median_col() { # column: median of that column of $cpu_pairs
    echo "$cpu_pairs" | awk -v c="$1" '{ print $c }' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
if [[ -n $cpu_pairs ]]; then
    awk -v n="$(echo "$cpu_pairs" | wc -l)" -v bk="$(median_col 1)" -v wk="$(median_col 2)" -v wt="$(median_col 3)" -v all="$(median_col 4)" 'BEGIN {
        printf "CPU per call (medians over the %d steps clean in both modes): baseline Kamailio %.0f us; with tollgate Kamailio %.0f us + tollgate %.0f us = %.0f us (x%.2f); where the CPU limits the call rate, that predicts a ratio of %.2f\n",
            n, bk, wk, wt, all, all / bk, bk / all
    }'
fi
base=$(clean baseline)
with=$(clean tollgate)
top=$(echo $RATES | awk '{ print $NF }')
echo
awk -v base="$base" -v with="$with" -v aim="$AIM_COST_PCT" -v top="$top" 'BEGIN {
    printf "highest clean rate (every call successful, >= 95 %% of the rate asked; median of rounds): baseline %d calls/s, with tollgate %d calls/s\n", base, with
    if (base == 0) { print "no clean step for the baseline: lower RATES"; exit }
    cost = (1 - with / base) * 100
    if (base == top) {
        printf "ratio %.2f, but the baseline was clean at the highest rate asked: add higher RATES for an answer\n", with / base
        printf "aim: tollgate costs Kamailio less than %d %% of its call rate: undecided\n", aim
        exit
    }
    printf "ratio %.2f: tollgate costs %.0f %% of Kamailio'"'"'s call rate on this machine (steps of RATES: a coarse figure)\n", with / base, cost
    printf "aim: tollgate costs Kamailio less than %d %% of its call rate: %s\n", aim, (cost < aim ? "met" : "NOT met")
}'
