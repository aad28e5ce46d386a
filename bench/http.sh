#!/usr/bin/env bash
# HTTP benchmark over loopback: tollgate against a bare axum handler on the same stack.
#
#   bench/http.sh      # 3 rounds; ROUNDS=5 RATES="10000 5000" CYCLES=20000 CONNECTIONS=32 to change
#
# Builds release once, writes a temporary policy (one account, EXTENSIONS extensions with
# generous limits, a bearer token from the environment), starts `tollgate serve` on
# 127.0.0.1:0 with a temporary SQLite database and `bare` on 127.0.0.1:0, then, ROUNDS
# times and interleaved (the machine is shared and noisy), runs `loadgen` against each:
# closed loop (the most it can do) and open loop at each of RATES cycles/s. A cycle is an
# authorize then an end. Prints each run (with the server's CPU time per cycle, read from
# /proc), then a table of medians over the rounds with the tollgate/bare ratio (median of
# the per-round ratios). Both servers are stopped on exit.
#
# Aim stated by the project: tollgate at least half the bare handler's rate, and an
# authorize p99 under 2 ms at 10,000 cycles/s.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RATES=${RATES:-10000 5000}
CYCLES=${CYCLES:-20000}
OPEN_CYCLES=${OPEN_CYCLES:-30000}
WARMUP=${WARMUP:-2000}
CONNECTIONS=${CONNECTIONS:-32}
EXTENSIONS=${EXTENSIONS:-1000}
MAX_SECONDS=${MAX_SECONDS:-30}

cd "$(dirname "$0")/.."
cargo build --release -p tollgate -p tollgate-bench
BIN=target/release

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

TOLLGATE_BENCH_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export TOLLGATE_BENCH_TOKEN

# ---- Policy --------------------------------------------------------------------------------
{
    cat <<'EOF'
[server]
durability = "normal"

[[tokens]]
name = "bench"
scopes = ["calls"]
env = "TOLLGATE_BENCH_TOKEN"

[plans.bench]
currency = "EUR"
rates = [
  { prefix = "+33",  description = "France fixed",  price_per_minute = "0.01", increments = "60/60" },
  { prefix = "+336", description = "France mobile", price_per_minute = "0.05", increments = "30/6" },
]

[accounts.bench]
country = "FR"
time_zone = "Europe/Paris"
plan = "bench"
limits = { daily = "100000000.00", monthly = "1000000000.00" }

[accounts.bench.extension_defaults]
limits = { daily = "1000000.00", monthly = "10000000.00" }
max_call_duration = "1h"
max_concurrent_calls = 100
EOF
    for ((i = 0; i < EXTENSIONS; i++)); do
        printf '\n[extensions.ext%04d]\naccount = "bench"\nallowed_cidrs = ["127.0.0.0/8"]\n' "$i"
    done
} >"$TMP/policy.toml"
"$BIN/tollgate" check "$TMP/policy.toml" >/dev/null

# ---- Servers -------------------------------------------------------------------------------
# start NAME COMMAND...: runs it in the background (in this shell, so that the trap can stop
# it), waits for its "listening on ADDR" line; sets ADDR and PID.
start() {
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 300); do
        ADDR=$(sed -n 's/^listening on //p' "$TMP/$name.out" | head -n1)
        [[ -n $ADDR ]] && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "$name did not start; its stderr:" >&2
    cat "$TMP/$name.err" >&2
    return 1
}

start tollgate "$BIN/tollgate" serve --config "$TMP/policy.toml" --listen 127.0.0.1:0 --database "$TMP/bench.db"
TOLLGATE_ADDR=$ADDR TOLLGATE_PID=$PID
start bare "$BIN/bare" --listen 127.0.0.1:0
BARE_ADDR=$ADDR BARE_PID=$PID
echo "tollgate on $TOLLGATE_ADDR (pid $TOLLGATE_PID), bare on $BARE_ADDR (pid $BARE_PID); $ROUNDS rounds; $CONNECTIONS connections; $EXTENSIONS extensions"
echo

# CPU time (user + system, in clock ticks) of a process, or of its threads named NAME.
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_ticks() { # cpu_ticks PID [THREAD-NAME]
    local total=0 stat
    for stat in /proc/"$1"/task/*/stat; do
        # Field 2 is "(comm)"; the fields after it are counted from its closing parenthesis.
        if [[ -z ${2:-} || $(<"$stat") == *"($2)"* ]]; then
            total=$((total + $(sed 's/^.*) //' "$stat" | awk '{ print $12 + $13 }')))
        fi
    done
    echo "$total"
}

# ---- Runs ----------------------------------------------------------------------------------
RESULTS="$TMP/results.txt"
: >"$RESULTS"
run() { # run LABEL ADDR PID CYCLES RATE
    local before journal_before after journal_after
    before=$(cpu_ticks "$3")
    journal_before=$(cpu_ticks "$3" tollgate-journa)
    "$BIN/loadgen" --addr "$2" --label "$1" --cycles "$4" --rate "$5" --warmup "$WARMUP" \
        --connections "$CONNECTIONS" --extensions "$EXTENSIONS" --max-seconds "$MAX_SECONDS" \
        | tee -a "$TMP/loadgen.log" | grep -v '^RESULT' || true
    after=$(cpu_ticks "$3")
    journal_after=$(cpu_ticks "$3" tollgate-journa)
    # Server CPU per cycle, warm-up included (the server cannot tell them apart).
    local line cycles cpu journal
    line=$(grep '^RESULT' "$TMP/loadgen.log" | tail -n1)
    cycles=$(($(sed -n 's/.* cycles=\([0-9]*\).*/\1/p' <<<"$line") + WARMUP))
    cpu=$(((after - before) * TICK_US / cycles))
    journal=$(((journal_after - journal_before) * TICK_US / cycles))
    echo "  server CPU $cpu µs per cycle (journal thread $journal µs)"
    echo "${line/#RESULT /RESULT round=$ROUND } server_cpu_us=$cpu journal_cpu_us=$journal" >>"$RESULTS"
}
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    echo "== round $ROUND"
    run tollgate-closed "$TOLLGATE_ADDR" "$TOLLGATE_PID" "$CYCLES" 0
    run bare-closed "$BARE_ADDR" "$BARE_PID" "$CYCLES" 0
    for rate in $RATES; do
        run "tollgate-open$rate" "$TOLLGATE_ADDR" "$TOLLGATE_PID" "$OPEN_CYCLES" "$rate"
        run "bare-open$rate" "$BARE_ADDR" "$BARE_PID" "$OPEN_CYCLES" "$rate"
    done
    echo
done

# ---- Table ---------------------------------------------------------------------------------
field() { # field LABEL KEY: the values of KEY over the rounds, one a line
    grep " label=$1 " "$RESULTS" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio_median() { # per-round ratio tollgate/bare of KEY for MODE
    paste <(field "tollgate-$1" "$2") <(field "bare-$1" "$2") | awk '$2 > 0 { print $1 / $2 }' | median
}
sum() { awk '{ s += $1 } END { print s + 0 }'; }

echo "medians over $ROUNDS rounds (latencies in µs; authorize latency counts from when a cycle was due in open loop)"
printf '%-24s %12s %12s %8s   %-28s %-28s\n' "" "tollgate" "bare" "ratio" "tollgate auth p50/p99 (end)" "bare auth p50/p99 (end)"
for mode in closed $(printf 'open%s ' $RATES); do
    if [[ $mode == closed ]]; then title="closed loop, cycles/s"; else title="open ${mode#open}/s, cycles/s"; fi
    t_rate=$(field "tollgate-$mode" cycles_per_s | median)
    b_rate=$(field "bare-$mode" cycles_per_s | median)
    r=$(ratio_median "$mode" cycles_per_s)
    t_lat="$(field "tollgate-$mode" auth_p50_us | median)/$(field "tollgate-$mode" auth_p99_us | median) ($(field "tollgate-$mode" end_p50_us | median)/$(field "tollgate-$mode" end_p99_us | median))"
    b_lat="$(field "bare-$mode" auth_p50_us | median)/$(field "bare-$mode" auth_p99_us | median) ($(field "bare-$mode" end_p50_us | median)/$(field "bare-$mode" end_p99_us | median))"
    printf '%-24s %12.0f %12.0f %8.2f   %-28s %-28s\n' "$title" "$t_rate" "$b_rate" "$r" "$t_lat" "$b_lat"
done
t_cpu=$(field tollgate-closed server_cpu_us | median)
b_cpu=$(field bare-closed server_cpu_us | median)
t_journal=$(field tollgate-closed journal_cpu_us | median)
printf '%-24s %12s %12s %8.2f   (tollgate journal thread: %s µs per cycle)\n' "server CPU µs per cycle" "$t_cpu" "$b_cpu" "$(ratio_median closed server_cpu_us)" "$t_journal"
errors=$(grep -o ' errors=[0-9]*' "$RESULTS" | cut -d= -f2 | sum)
denied=$(grep -o ' denied=[0-9]*' "$RESULTS" | cut -d= -f2 | sum)
echo "errors over all runs: $errors; denied calls: $denied"
t_closed=$(ratio_median closed cycles_per_s)
AIM_RATE=10000
if [[ " $RATES " == *" $AIM_RATE "* ]]; then
    t_p99=$(field "tollgate-open$AIM_RATE" auth_p99_us | median)
    awk -v r="$t_closed" -v p="$t_p99" -v rate="$AIM_RATE" 'BEGIN {
        printf "aim: tollgate >= 0.5 x bare (closed loop): %s (%.2f); authorize p99 < 2000 us at %d/s: %s (%s us)\n",
            (r >= 0.5 ? "met" : "MISSED"), r, rate, (p < 2000 ? "met" : "MISSED"), p
    }'
else
    awk -v r="$t_closed" 'BEGIN { printf "aim: tollgate >= 0.5 x bare (closed loop): %s (%.2f); p99 at 10000/s: not measured (not in RATES)\n", (r >= 0.5 ? "met" : "MISSED"), r }'
fi
