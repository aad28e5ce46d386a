#!/usr/bin/env bash
# Benchmark: `tollgate audit` over a generated Asterisk pjsip.conf + voicemail.conf with
# N extensions (default 100,000): one endpoint, auth and aor section each (templates as a
# real FreePBX-style file uses them), a mix of weak and strong passwords and PINs, some
# endpoints without IP restriction. Prints the files' size, the wall time and peak memory
# (GNU time) of each run, and the median. Run by hand: bench/audit.sh   (N=100000 RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
RUNS=${RUNS:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cargo build --release -q -p tollgate
BIN=target/release/tollgate

python3 - "$N" "$TMP" <<'PY'
import random, sys
n, tmp = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1)
weak = ["1234", "password", "letmein", "qwerty"]
alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_.+=~"
with open(f"{tmp}/pjsip.conf", "w") as f:
    f.write("[endpoint-tpl](!)\ntype=endpoint\ncontext=from-internal\ndisallow=all\nallow=ulaw\n\n")
    f.write("[auth-tpl](!)\ntype=auth\nauth_type=userpass\n\n[aor-tpl](!)\ntype=aor\nmax_contacts=1\n\n")
    for i in range(n):
        ext = 100000 + i
        if i % 10 == 0:
            password = rng.choice(weak) if i % 20 == 0 else f"{ext}secret"
        else:
            password = "".join(rng.choice(alphabet) for _ in range(20))
        f.write(f"[{ext}](endpoint-tpl)\nauth={ext}-auth\naors={ext}\n")
        if i % 7:
            f.write("permit=192.0.2.0/24\n")
        f.write(f"\n[{ext}-auth](auth-tpl)\nusername={ext}\npassword={password}\n\n[{ext}](aor-tpl)\n\n")
with open(f"{tmp}/voicemail.conf", "w") as f:
    f.write("[default]\n")
    for i in range(n):
        ext = 100000 + i
        pin = rng.choice(["1234", "1111", str(ext)]) if i % 5 == 0 else str(rng.randrange(100000, 999999))
        f.write(f"{ext} => {pin},User {ext},,,\n")
PY
echo "generated: $N extensions; pjsip.conf $(du -h "$TMP/pjsip.conf" | cut -f1), voicemail.conf $(du -h "$TMP/voicemail.conf" | cut -f1)"

walls=()
for ((run = 1; run <= RUNS; run++)); do
    /usr/bin/time -f '%e %M' -o "$TMP/time" "$BIN" audit --from "pjsip:$TMP/pjsip.conf" --from "voicemail:$TMP/voicemail.conf" --json >"$TMP/out.json" 2>"$TMP/err" || true
    read -r wall peak <"$TMP/time"
    findings=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(len(d['findings']))" "$TMP/out.json")
    printf 'run %d: %6.2f s wall, %6.1f MiB peak, %d findings\n' "$run" "$wall" "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')" "$findings"
    walls+=("$wall")
done
median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "median: $median s for $N extensions ($(awk -v n="$N" -v w="$median" 'BEGIN { printf "%.0f", n / w }') extensions/s)"
