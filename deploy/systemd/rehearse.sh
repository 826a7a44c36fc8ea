#!/usr/bin/env bash
# A rehearsal of GUIDE.md on one machine, without systemd or docker: each "machine" of the
# guide is a loopback address (party 9999: 127.0.1.10-12, party 10000: 127.0.2.10-11), each
# daemon runs the unit's command line with the deploy/ sample config (machine-specific keys as
# EGGROLL_* variables, as `systemctl edit` would set them), the roll-sites' certificates come
# from the guide's openssl commands, and the PSI job runs between the parties over mutual TLS.
#
#   deploy/systemd/rehearse.sh [path/to/eggroll]
#
# Uses the fixed ports of the guide (4670, 4671, 9370, 9371) on 127.0.1.x and 127.0.2.x, so
# one rehearsal at a time. Everything lives in a temporary dir, removed at the end; the
# daemons are stopped by their process ids. Exit status 0 when both sides print the right
# intersection.
set -euo pipefail
# The whole script is one block, read before any of it runs: editing the file while it runs
# (a checkout, a rebuild) cannot change what this run does. (shellcheck takes the trap
# handlers inside it for unreachable code.)
# shellcheck disable=SC2317
{

here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(cd "$here/.." && pwd)"
eggroll="${1:-$deploy/../target/release/eggroll}"
die() { echo "rehearse: FAILED: $*" >&2; exit 1; }
say() { echo "rehearse: $*"; }
[ -x "$eggroll" ] || die "no eggroll binary at $eggroll; build it or pass its path"
command -v openssl >/dev/null || die "openssl is needed for the certificates"

run="$(mktemp -d "${TMPDIR:-/tmp}/eggroll-rehearsal.XXXXXX")"
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "$rc" != 0 ]; then
        for f in "$run"/*.log; do echo "---- $(basename "$f") (last 10 lines)"; tail -n 10 "$f"; done
    fi
    rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The EGGROLL_* variable of every key of a sample config whose value names an address off
# loopback (the sample's machines, 10.0.0.x, or 0.0.0.0): the rehearsal must override each.
far_keys() { # <toml>
    awk '
        /^[[:space:]]*\[/ { s = $0; gsub(/[][[:space:]]/, "", s); section = toupper(s) "_"; next }
        /^[[:space:]]*#/ || !/=/ { next }
        {
            key = $0; sub(/[[:space:]]*=.*/, "", key); gsub(/[[:space:]]/, "", key)
            value = $0; sub(/^[^=]*=/, "", value); sub(/#.*/, "", value)
            n = split(value, parts, /[^0-9.]+/)
            for (i = 1; i <= n; i++)
                if (parts[i] ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ && parts[i] !~ /^127\./) {
                    print "EGGROLL_" section toupper(key); break
                }
        }' "$1"
}

daemon() { # <log name> <VAR=value>... -- runs `eggroll ...` in the background
    local name="$1"; shift
    # Only loopback: refuse to start a daemon whose sample names another address that this
    # run does not override (a key added to a sample later would otherwise go off-machine).
    local args=("$@") i var a set
    for ((i = 0; i < ${#args[@]}; i++)); do
        [ "${args[$i]}" = --config ] || continue
        for var in $(far_keys "${args[$((i + 1))]}"); do
            # A loop, not `printf | grep -q`: under pipefail, grep's early exit can SIGPIPE
            # printf and fail the check at random.
            set=0
            for a in "${args[@]}"; do [[ $a == "$var="* ]] && set=1; done
            [ "$set" = 1 ] \
                || die "${args[$((i + 1))]} names an address off this machine in the key behind $var; the rehearsal must set $var for $name"
        done
    done
    # The log settings of the units.
    (exec env EGGROLL_LOG=info NO_COLOR=1 "$@") >"$run/$name.log" 2>&1 &
    pids+=($!)
}

# GUIDE.md section 7, per party: a CA, and a roll-site certificate naming its address.
tls() { # <party> <address>
    local id="$1" ip="$2" t="$run/tls-$1"
    mkdir -p "$t"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -keyout "$t/ca-$id.key" -out "$t/ca-$id.crt" -subj "/O=party $id/CN=eggroll CA $id" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$t/party.key" -out "$t/party.csr" -subj "/O=party $id/CN=rollsite $id" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:$ip" 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth,clientAuth' >"$t/party.ext"
    openssl x509 -req -in "$t/party.csr" -CA "$t/ca-$id.crt" -CAkey "$t/ca-$id.key" -CAcreateserial \
        -days 825 -extfile "$t/party.ext" -out "$t/party.crt" 2>/dev/null
    openssl verify -CAfile "$t/ca-$id.crt" -purpose sslserver -verify_ip "$ip" "$t/party.crt" >/dev/null \
        || die "the certificate of party $id does not verify for $ip"
}

# One party: cluster manager and roll-site on <net>.10, node managers on <net>.<n>.
party() { # <party> <peer> <net> <peer net> <node suffixes...>
    local id="$1" peer="$2" net="$3" peernet="$4"; shift 4
    local clients="127.0.0.1"
    daemon "clustermanager-$id" EGGROLL_CLUSTERMANAGER_HOST="$net.10" \
        EGGROLL_DATA_DIR="$run/$id/clustermanager" EGGROLL_LOGS_DIR="$run/$id/logs" \
        "$eggroll" --config "$deploy/clustermanager.toml" clustermanager
    for n in "$@"; do
        daemon "nodemanager-$id-$n" EGGROLL_CLUSTERMANAGER_HOST="$net.10" EGGROLL_NODEMANAGER_HOST="$net.$n" \
            EGGROLL_DATA_DIR="$run/$id/data-$n" EGGROLL_LOGS_DIR="$run/$id/logs-$n" \
            "$eggroll" --config "$deploy/nodemanager.toml" nodemanager
        clients="$clients,$net.$n"
    done
    printf '{"route_table": {"%s": {"default": [{"ip": "%s", "port": 9371, "use_ssl": true}]}},\n "permission": {"default_allow": false}, "self_party": ["%s"]}\n' \
        "$peer" "$peernet.10" "$id" >"$run/route_table-$id.json"
    cp "$run/tls-$peer/ca-$peer.crt" "$run/tls-$id/trusted-cas.pem"
    daemon "rollsite-$id" EGGROLL_ROLLSITE_PARTY_ID="$id" EGGROLL_ROLLSITE_HOST="$net.10" \
        EGGROLL_DATA_DIR="$run/$id" EGGROLL_LOGS_DIR="$run/$id/logs" EGGROLL_ROLLSITE_BUFFER_DIR="$run/$id/rollsite" \
        EGGROLL_ROLLSITE_TLS_CERT="$run/tls-$id/party.crt" EGGROLL_ROLLSITE_TLS_KEY="$run/tls-$id/party.key" \
        EGGROLL_ROLLSITE_TLS_CA="$run/tls-$id/trusted-cas.pem" EGGROLL_ROLLSITE_ROUTE_TABLE="$run/route_table-$id.json" \
        EGGROLL_ROLLSITE_LOCAL_CLIENTS="$clients" EGGROLL_ROLLSITE_CLUSTER_MANAGER="$net.10:4670" \
        "$eggroll" --config "$here/rollsite.toml" rollsite
    printf '[clustermanager]\nhost = "%s"\nport = 4670\n\n[rollsite]\nhost = "%s"\nport = 9370\nget_idle_timeout_ms = 60000\n' \
        "$net.10" "$net.10" >"$run/client-$id.toml"
}

say "certificates (GUIDE.md section 7)"
tls 9999 127.0.1.10
tls 10000 127.0.2.10
say "party 9999: cluster manager and roll-site on 127.0.1.10, node managers on 127.0.1.11 and .12"
party 9999 10000 127.0.1 127.0.2 11 12
say "party 10000: cluster manager and roll-site on 127.0.2.10, node managers on 127.0.2.10 and .11"
party 10000 9999 127.0.2 127.0.1 10 11

for id in 9999 10000; do
    for _ in $(seq 1 40); do
        alive="$("$eggroll" --config "$run/client-$id.toml" node list 2>/dev/null | grep -c ' ALIVE ' || true)"
        [ "$alive" -ge 2 ] && break
        sleep 0.5
    done
    [ "$alive" -ge 2 ] || die "party $id: $alive of 2 node managers ALIVE after 20 s"
    "$eggroll" --config "$run/client-$id.toml" node list | sed "s/^/  [$id] /"
done
say "TLS handshake from party 9999 to party 10000's roll-site (GUIDE.md section 9)"
verdict="$(openssl s_client -connect 127.0.2.10:9371 -alpn h2 -verify_ip 127.0.2.10 \
    -cert "$run/tls-9999/party.crt" -key "$run/tls-9999/party.key" -CAfile "$run/tls-9999/trusted-cas.pem" \
    </dev/null 2>&1 | grep -a -m1 -E 'Verification|alert' || true)"
echo "  $verdict"
[ "$verdict" = "Verification: OK" ] || die "the TLS handshake between the roll-sites failed"

say "the PSI job on both parties"
psi() { # <party> <role> <peer> <net>
    timeout 240 "$eggroll" --config "$run/client-$1.toml" psi --role "$2" --party-id "$1" --peer-party-id "$3" \
        --job-id rehearsal --generate 20000 --overlap 6000 \
        --cluster-manager "$4.10:4670" --rollsite "$4.10:9370" >"$run/psi-$1.out" 2>&1
}
psi 9999 guest 10000 127.0.1 & g=$!
psi 10000 host 9999 127.0.2 & h=$!
grc=0 hrc=0
wait "$g" || grc=$?
wait "$h" || hrc=$?
for id in 9999 10000; do sed "s/^/  [$id] /" "$run/psi-$id.out"; done
if [ "$grc" != 0 ] || [ "$hrc" != 0 ]; then die "the PSI job failed (guest exit $grc, host exit $hrc)"; fi
for id in 9999 10000; do
    grep -q 'intersection: 6000 ids (expected 6000, correct)' "$run/psi-$id.out" || die "party $id did not find the right intersection"
done
say "roll-site transfer log lines:"
grep -h 'transfer' "$run"/rollsite-*.log | sed 's/^/  /' | head -n 4 || true
say "PASSED"
exit
}
