#!/usr/bin/env bash
# The two-party trial, end to end, on this docker host:
#   bundles rendered from the party files (eggroll deploy render) → image from a local eggroll binary (nothing pulled) → both
#   parties up → wait until every node manager is ALIVE → the PSI job between the parties,
#   checked → the PSI job again, killing one of party 9999's node managers while it runs:
#   it must complete with the right answer or fail with a clear error, within a bound →
#   everything down (containers, volumes, networks), also on failure or Ctrl-C.
#
#   deploy/docker-compose/trial.sh [path/to/eggroll]
#
# Environment (all optional):
#   EGGROLL_TRIAL_IDS=20000       ids per party          EGGROLL_TRIAL_OVERLAP=6000  shared ids
#   EGGROLL_TRIAL_TIMEOUT=240     seconds a job may take before it counts as hung
#   EGGROLL_TRIAL_FAULT=1         0: skip the run that kills a node manager
#   EGGROLL_TRIAL_KILL_DELAY=2    seconds after the guest's session is ACTIVE to kill it
#   EGGROLL_TRIAL_JOBS=1          0: only bring the parties up, check them, bring them down
#   EGGROLL_TRIAL_KEEP=1          leave the parties running afterwards (prints how to stop them)
#   EGGROLL_TRIAL_GUEST=FILE      the guest's party file (default: party-9999.yaml beside this script)
#   EGGROLL_TRIAL_HOST=FILE       the host's party file (default: party-10000.yaml)
#   EGGROLL_TRIAL_TLS=1           0: the roll-sites talk plaintext on 9370 (rendered with --set)
#   EGGROLL_IMAGE=TAG             image tag to build, run and keep (default: a tag of this
#                                 run's own, removed at the end like everything else)
# Exit status: 0 when every check passed, 1 otherwise (the reason is printed last).
set -euo pipefail
# The whole script is one block, read before any of it runs: editing the file while it runs
# (a checkout, a rebuild) cannot change what this run does. (shellcheck takes the trap
# handlers inside it for unreachable code.)
# shellcheck disable=SC2317
{

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
binary="${1:-$repo/target/release/eggroll}"
ids="${EGGROLL_TRIAL_IDS:-20000}"
overlap="${EGGROLL_TRIAL_OVERLAP:-6000}"
job_timeout="${EGGROLL_TRIAL_TIMEOUT:-240}"
fault="${EGGROLL_TRIAL_FAULT:-1}"
keep="${EGGROLL_TRIAL_KEEP:-0}"
jobs="${EGGROLL_TRIAL_JOBS:-1}"
guest_file="${EGGROLL_TRIAL_GUEST:-$here/party-9999.yaml}"
host_file="${EGGROLL_TRIAL_HOST:-$here/party-10000.yaml}"
tls="${EGGROLL_TRIAL_TLS:-1}"
# The image this run builds and removes at the end; empty when the caller named one to keep.
own_image=""

start=$SECONDS
say() { printf '[trial %4ds] %s\n' "$((SECONDS - start))" "$*"; }
die() { printf '[trial %4ds] FAILED: %s\n' "$((SECONDS - start))" "$*" >&2; exit 1; }

# ---- preflight ---------------------------------------------------------------------------
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no docker engine answers (docker info fails): start dockerd or check permissions"
if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; then compose=(docker-compose)
else die "neither 'docker compose' nor 'docker-compose' works; install one (Debian: apt-get install docker-compose)"; fi
command -v timeout >/dev/null || die "timeout (coreutils) is missing"
[ -x "$binary" ] || die "no eggroll binary at $binary; build it (cargo build --release -p eggroll) or pass its path"
for f in "$guest_file" "$host_file"; do [ -r "$f" ] || die "cannot read the party file $f"; done
[ "$tls" = 0 ] || command -v openssl >/dev/null \
    || die "the trial's TLS certificates need openssl (Debian: apt-get install openssl), or run with EGGROLL_TRIAL_TLS=0"

# ---- one unique name and free subnets per run, so runs never collide ---------------------
run_id="$(date +%H%M%S)-$$"
prefix="eggtrial-$run_id"
exchange="$prefix-exchange"
if [ -z "${EGGROLL_IMAGE:-}" ]; then own_image="eggroll-rs:$prefix"; EGGROLL_IMAGE="$own_image"; fi
export EGGROLL_IMAGE
used_subnets="$( { docker network ls -q | xargs -r docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}'
                   command -v ip >/dev/null && ip -4 route | awk '{print $1}'; } 2>/dev/null | tr ' ' '\n')"
trial_subnets=""
for second in $(shuf -i 100-249 2>/dev/null || seq 100 249); do
    if ! grep -q "^10\.$second\." <<<"$used_subnets"; then trial_subnets="10.$second"; break; fi
done
[ -n "$trial_subnets" ] || die "no free 10.x.0.0/16 range for the trial's networks; remove unused docker networks (docker network prune)"

work="$(mktemp -d "${TMPDIR:-/tmp}/eggroll-trial.XXXXXX")"
bundles="$work/bundles"
parties=() nodemanagers=()
started=0

compose_in() { # <party> <compose args...>: compose for one party's bundle
    local party="$1"; shift
    (cd "$bundles/party-$party" && "${compose[@]}" -p "$prefix-$party" "$@")
}
# A CA and a roll-site certificate per party, as each party makes its own (GUIDE.md, "TLS
# certificates"), naming the party's name on the exchange network (rollsite-<id>). Never
# committed: made afresh in this run's work dir, removed with it.
make_tls() { # <party id> <dir>
    local id="$1" dir="$2"
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -subj "/O=party $id/CN=eggroll trial CA $id" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        >/dev/null 2>&1 || die "openssl could not make the CA of party $id (needs OpenSSL 1.1.1 or later)"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/party.key" \
        -out "$dir/party.csr" -subj "/O=party $id/CN=rollsite $id" >/dev/null 2>&1 \
        || die "openssl could not make the key of party $id"
    printf '%s\n' "subjectAltName=DNS:rollsite-$id" 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth,clientAuth' >"$dir/party.ext"
    openssl x509 -req -in "$dir/party.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 30 -extfile "$dir/party.ext" -out "$dir/party.crt" >/dev/null 2>&1 \
        || die "openssl could not sign the certificate of party $id"
}
container() { # <party> <service>: id of its running container
    compose_in "$1" ps -q "$2" 2>/dev/null | head -n1
}
show_logs() {
    for p in "${parties[@]}"; do
        echo "---- logs of party $p (last 25 lines per service) ----"
        compose_in "$p" logs --no-color --tail 25 2>&1 || true
    done
}
cleanup() {
    local rc=$?
    set +e
    if [ "$started" = 1 ] && [ "$rc" != 0 ]; then show_logs; fi
    if [ "$keep" = 1 ] && [ "$started" = 1 ]; then
        say "leaving the parties running (EGGROLL_TRIAL_KEEP=1). Stop them with:"
        for p in "${parties[@]}"; do echo "  (cd $bundles/party-$p && ${compose[*]} -p $prefix-$p down -v)"; done
        echo "  docker network rm $exchange; rm -rf $work${own_image:+; docker image rm $own_image}"
        exit "$rc"
    fi
    if [ "$started" = 1 ]; then
        say "bringing both parties down"
        docker ps -aq --filter "name=$prefix-job-" | xargs -r docker rm -f >/dev/null 2>&1
        for p in "${parties[@]}"; do compose_in "$p" down -v --remove-orphans -t 5 >/dev/null 2>&1; done
    fi
    docker network rm "$exchange" >/dev/null 2>&1
    # The image this run built under its own tag goes too; one the caller named stays, but
    # this run's copy is removed if a later build took that tag meanwhile.
    if [ -n "$own_image" ]; then
        docker image rm -f "$own_image" >/dev/null 2>&1
    elif [[ "$EGGROLL_IMAGE" == sha256:* ]] && [ "$(docker image inspect -f '{{len .RepoTags}}' "$EGGROLL_IMAGE" 2>/dev/null)" = 0 ]; then
        docker image rm "$EGGROLL_IMAGE" >/dev/null 2>&1
    fi
    rm -rf "$work"
    if [ "$rc" = 0 ]; then say "PASSED in $((SECONDS - start)) s"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- bundles and image --------------------------------------------------------------------
# The same renderer and party files as Kubernetes (eggroll deploy render); what this run
# changes is given with --set: the subnets it picked, the exchange network's name, plaintext.
say "rendering the party bundles from $(basename "$guest_file") and $(basename "$host_file") (subnets $trial_subnets.*, project $prefix)"
n=0
for f in "$guest_file" "$host_file"; do
    n=$((n + 1))
    subnet="$trial_subnets.$n.0/24"
    sets=(--set "compose.subnet=$subnet" --set "rollsite.localClients=[$subnet]"
          --set "compose.exchangeNetwork=$exchange")
    if [ "$tls" = 0 ]; then sets+=(--set rollsite.enableTLS=false --set "rollsite.partyList[0].partyPort=9370"); fi
    out="$bundles/render-$n"
    "$binary" deploy render --party "$f" --target compose --out "$out" "${sets[@]}" 2>&1 | sed 's/^/  /'
    [ -f "$out/conf/rollsite.toml" ] || die "rendering $f made no bundle (error above)"
    id="$(sed -n 's/^party_id = "\(.*\)"$/\1/p' "$out/conf/rollsite.toml")"
    [ -n "$id" ] || die "no party_id in the bundle of $f"
    [ ! -e "$bundles/party-$id" ] || die "both party files have party id $id"
    mv "$out" "$bundles/party-$id"
    parties+=("$id")
    nodemanagers+=("$(grep -c '^  nodemanager-[0-9][0-9]*:$' "$bundles/party-$id/docker-compose.yml" || true)")
done
guest="${parties[0]}" host="${parties[1]}"
[ "${nodemanagers[0]}" -ge 2 ] || die "the fault run stops one node manager of party $guest: give it at least 2 (nodemanager.replicas)"
if [ "$tls" != 0 ]; then
    for p in "${parties[@]}"; do make_tls "$p" "$work/tls/party-$p"; done
    for p in "${parties[@]}"; do
        dir="$bundles/party-$p/conf/tls"
        mkdir -p "$dir"
        cp "$work/tls/party-$p/party.crt" "$work/tls/party-$p/party.key" "$dir/"
        # Each party trusts the other's CA only; the CAs' keys stay out of the bundles.
        for q in "${parties[@]}"; do [ "$q" = "$p" ] || cat "$work/tls/party-$q/ca.crt"; done >"$dir/trusted-cas.pem"
        # The daemons run as uid 10001: the key must be readable by it and no one else.
        # Without root, fall back to world-readable (a trial key on this host).
        if chown 10001 "$dir/party.key" 2>/dev/null; then chmod 0400 "$dir/party.key"
        else chmod 0644 "$dir/party.key"; fi
    done
fi

say "building image $EGGROLL_IMAGE from $binary (FROM scratch; nothing is pulled)"
"$here/build-image.sh" "$binary" "$EGGROLL_IMAGE" | sed 's/^/  /'
# Run this very image (by id): another trial may retag eggroll-rs:trial while this one runs.
EGGROLL_IMAGE="$(docker image inspect -f '{{.Id}}' "$EGGROLL_IMAGE")" \
    || die "the image just built cannot be inspected"
[ "$jobs" = 0 ] || docker run --rm "$EGGROLL_IMAGE" psi --help >/dev/null 2>&1 \
    || die "$binary has no 'psi' command; build the current main branch (cargo build --release -p eggroll)"

# ---- up ----------------------------------------------------------------------------------
say "creating the exchange network $exchange (the roll-sites are the only members)"
docker network create --internal --subnet "$trial_subnets.250.0/24" "$exchange" >/dev/null \
    || die "cannot create the docker network $exchange ($trial_subnets.250.0/24; error above): if another network took that range meanwhile, run the trial again"
started=1
for p in "${parties[@]}"; do
    if ! out="$(compose_in "$p" up -d 2>&1)"; then
        echo "$out" >&2
        die "party $p did not start (docker-compose up, output above)"
    fi
    say "party $p started: $(compose_in "$p" ps --services 2>/dev/null | grep -vx job | tr '\n' ' ')"
done

# Every daemon running (not restarting), every node manager ALIVE, every roll-site listening.
say "waiting until both parties are ready"
deadline=$((SECONDS + 90))
for i in "${!parties[@]}"; do
    p="${parties[$i]}"
    want="${nodemanagers[$i]}"
    cm="$(container "$p" clustermanager)"
    rs="$(container "$p" rollsite)"
    if [ -z "$cm" ] || [ -z "$rs" ]; then die "party $p: the cluster manager or roll-site container did not start"; fi
    while :; do
        restarting="$(compose_in "$p" ps -a -q | xargs -r docker inspect -f '{{.Name}} {{.RestartCount}} {{.State.Status}}' | awk '$2 > 0 || $3 != "running" {print $1}')"
        [ -z "$restarting" ] || die "party $p: $restarting exited or restarted; its logs follow"
        alive="$(docker exec "$cm" /eggroll node list --cluster-manager clustermanager:4670 2>/dev/null | grep -c ' ALIVE ' || true)"
        listening="$(docker logs "$rs" 2>&1 | grep -c 'listening on' || true)"
        if [ "$alive" -ge "$want" ] && [ "$listening" -ge 1 ]; then break; fi
        [ $SECONDS -lt $deadline ] || die "party $p not ready after 90 s: $alive of $want node managers ALIVE, roll-site listening: $listening"
        sleep 1
    done
    docker exec "$cm" /eggroll node list --cluster-manager clustermanager:4670 | sed "s/^/  [$p] /"
    docker exec "$rs" /eggroll --config /etc/eggroll/rollsite.toml rollsite --check | sed "s/^/  [$p] /" \
        || die "party $p: its route table is refused (see above)"
done

# Nothing but the roll-sites crosses parties: from inside party $guest (its cluster manager,
# and its roll-site, which is on the exchange network), party $host's cluster manager must
# not answer.
other_cm="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$(container "$host" clustermanager)" | awk '{print $1}')"
for svc in clustermanager rollsite; do
    if timeout 5 docker exec "$(container "$guest" "$svc")" /eggroll node list --cluster-manager "$other_cm:4670" >/dev/null 2>&1; then
        die "party $guest's $svc reaches party $host's cluster manager at $other_cm:4670: the networks are not isolated"
    fi
done
say "isolation: party $guest's cluster manager and roll-site cannot reach party $host's cluster manager ($other_cm:4670)"

# ---- the job -----------------------------------------------------------------------------
# Starts the PSI job of one party in a fresh job container, output to <out>; sets job_pid.
start_job() { # <party> <role> <peer> <job id> <out file>
    local party="$1" role="$2" peer="$3" job="$4" out="$5"
    ( cd "$bundles/party-$party" && exec timeout --kill-after=10 "$job_timeout" \
        "${compose[@]}" -p "$prefix-$party" run --rm -T --name "$prefix-job-$party" job \
        psi --role "$role" --party-id "$party" --peer-party-id "$peer" --job-id "$job" \
        --generate "$ids" --overlap "$overlap" \
        --rollsite rollsite:9370 --cluster-manager clustermanager:4670 ) >"$out" 2>&1 &
    job_pid=$!
}
# Waits for a job started by start_job; sets job_rc (124/137: it was still running at the bound).
wait_job() { # <pid> <party>
    job_rc=0
    wait "$1" || job_rc=$?
    if [ "$job_rc" = 124 ] || [ "$job_rc" = 137 ]; then
        docker rm -f "$prefix-job-$2" >/dev/null 2>&1 || true
    fi
}
run_both() { # <job id> <label>: starts both sides, sets gpid/hpid and the output files
    gout="$work/$1-guest.out" hout="$work/$1-host.out"
    start_job "$guest" guest "$host" "$1" "$gout"; gpid=$job_pid
    start_job "$host" host "$guest" "$1" "$hout"; hpid=$job_pid
    job_start=$SECONDS
    say "$2: PSI job $1 started on both parties ($ids ids each, $overlap shared; bound ${job_timeout} s)"
}
# The job's output, without docker-compose v1's "Creating ..." lines and the exit code it
# prints on a line of its own.
print_out() { tr -d '\r' <"$2" | sed "s/^/  [$1] /" | grep -v -e '^  \[[^]]*\] Creating ' -e '^  \[[^]]*\] [0-9][0-9]*$' || true; }

if [ "$jobs" = 0 ]; then say "EGGROLL_TRIAL_JOBS=0: not running the jobs"; exit 0; fi
expected_line="intersection: $overlap ids (expected $overlap, correct)"
run_both "trial-$run_id-ok" "run 1"
wait_job "$gpid" "$guest"; grc=$job_rc
wait_job "$hpid" "$host"; hrc=$job_rc
say "run 1: finished in $((SECONDS - job_start)) s (guest exit $grc, host exit $hrc)"
print_out "$guest guest" "$gout"; print_out "$host host" "$hout"
case "$grc" in 124|137) die "run 1: the guest's job hung (still running after $job_timeout s)" ;; esac
case "$hrc" in 124|137) die "run 1: the host's job hung (still running after $job_timeout s)" ;; esac
[ "$grc" = 0 ] || die "run 1: the guest's job failed (exit $grc); its output is above"
[ "$hrc" = 0 ] || die "run 1: the host's job failed (exit $hrc); its output is above"
grep -qF "$expected_line" "$gout" || die "run 1: the guest did not print '$expected_line'"
say "run 1: PASSED: $expected_line"

# ---- the job again, losing a node manager while it runs ----------------------------------
if [ "$fault" = 1 ]; then
    victim="nodemanager-$((nodemanagers[0] - 1))"
    victim_id="$(container "$guest" "$victim")"
    cm="$(container "$guest" clustermanager)"
    run_both "trial-$run_id-fault" "run 2"
    # Kill it once the guest's session is ACTIVE (its eggs, on every node, serve) and the job
    # is computing: the job loses live eggs and the node manager that watches them.
    active=0
    while kill -0 "$gpid" 2>/dev/null; do
        active="$(docker exec "$cm" /eggroll session list --cluster-manager clustermanager:4670 2>/dev/null \
                  | awk '$2 == "ACTIVE"' | wc -l)"
        [ "$active" -gt 0 ] && break
        [ $((SECONDS - job_start)) -lt "$job_timeout" ] || break
        sleep 0.5
    done
    sleep "${EGGROLL_TRIAL_KILL_DELAY:-2}"
    if kill -0 "$gpid" 2>/dev/null && [ "$active" -gt 0 ]; then
        say "run 2: killing party $guest's $victim (docker kill) $((SECONDS - job_start)) s into the job, its session ACTIVE"
    else
        say "run 2: the guest's job ended (or its session never showed ACTIVE) before the kill; killing $victim anyway"
    fi
    docker kill "$victim_id" >/dev/null
    wait_job "$gpid" "$guest"; grc=$job_rc
    wait_job "$hpid" "$host"; hrc=$job_rc
    say "run 2: finished in $((SECONDS - job_start)) s (guest exit $grc, host exit $hrc)"
    print_out "$guest guest" "$gout"; print_out "$host host" "$hout"
    for side in "guest $grc $gout" "host $hrc $hout"; do
        read -r name rc out <<<"$side"
        case "$rc" in
            124|137) die "run 2: the $name's job hung: still running $job_timeout s after it started" ;;
            0) grep -qF "$expected_line" "$out" || [ "$name" = host ] \
                   || die "run 2: the $name's job exited 0 without '$expected_line'"
               say "run 2: the $name's job completed despite the lost node manager" ;;
            *) grep -q '^error: ..*' "$out" \
                   || die "run 2: the $name's job failed (exit $rc) without an 'error: ...' line saying why"
               say "run 2: the $name's job failed as it should, with: $(grep -m1 '^error: ' "$out" | cut -c1-300)" ;;
        esac
    done
    # The cluster manager notices the lost node (heartbeat timeout) and says so.
    lost=""
    for _ in $(seq 1 30); do
        lost="$(docker exec "$cm" /eggroll node list --cluster-manager clustermanager:4670 2>/dev/null \
                | awk -v h="$victim.nodemanager:" 'index($2, h) == 1 {print $3}')"
        [ "$lost" != ALIVE ] && break
        sleep 1
    done
    [ "$lost" != ALIVE ] || die "run 2: party $guest's cluster manager still lists $victim as ALIVE 30 s after it was killed"
    say "run 2: PASSED: party $guest's cluster manager lists $victim as $lost; no side hung"
fi
exit
}
