#!/usr/bin/env bash
# Generates one deployment bundle per party from parties.conf, as KubeFATE does:
#
#   bundles/party-<id>/docker-compose.yml     roll-site, cluster manager, node managers, job
#   bundles/party-<id>/conf/*.toml            one config per daemon, read with --config
#   bundles/party-<id>/conf/route_table.json  EggRoll route table of the party's roll-site
#
#   deploy/docker-compose/generate.sh [parties.conf] [output dir]
# Environment: EGGROLL_EXCHANGE_NETWORK (name of the exchange network, default
# eggroll-exchange), EGGROLL_SUBNET_BASE (overrides subnet_base).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
conf="${1:-$here/parties.conf}"
out="${2:-$here/bundles}"
die() { echo "generate: error: $*" >&2; exit 1; }

[ -r "$conf" ] || die "cannot read $conf"
partylist=() partyroles=() nodemanagers=() partyiplist=()
processors_per_node=2 subnet_base=10.213 tls=1
# shellcheck source-path=SCRIPTDIR source=parties.conf
. "$conf"
subnet_base="${EGGROLL_SUBNET_BASE:-$subnet_base}"
exchange="${EGGROLL_EXCHANGE_NETWORK:-eggroll-exchange}"

n=${#partylist[@]}
[ "$n" -ge 2 ] || die "$conf lists $n party; a federation needs at least two in partylist"
[ ${#partyroles[@]} -eq "$n" ] || die "$conf: partyroles needs one entry per party in partylist ($n)"
[ ${#nodemanagers[@]} -eq "$n" ] || die "$conf: nodemanagers needs one entry per party in partylist ($n)"
[ ${#partyiplist[@]} -eq 0 ] || [ ${#partyiplist[@]} -eq "$n" ] \
    || die "$conf: partyiplist must be empty (one docker host) or have one address per party"
[[ "$subnet_base" =~ ^[0-9]+\.[0-9]+$ ]] || die "subnet_base $subnet_base is not like 10.213"
for i in "${!partylist[@]}"; do
    [[ "${partylist[$i]}" =~ ^[0-9]+$ ]] || die "$conf: party id ${partylist[$i]} is not a number"
    [[ "${nodemanagers[$i]}" =~ ^[1-9][0-9]?$ ]] || die "$conf: nodemanagers ${nodemanagers[$i]} is not 1..99"
done

# Fixed addresses inside each party's network: the roll-site lets only the party's own
# clients (job and eggs, which run in the node manager containers) pull what it received,
# and it checks them by IP address.
ip_of() { # <party index> <role>
    local net="$subnet_base.$(($1 + 1))"
    case "$2" in
        rollsite) echo "$net.10" ;;
        clustermanager) echo "$net.11" ;;
        job) echo "$net.30" ;;
        nodemanager-*) echo "$net.$((100 + ${2#nodemanager-}))" ;;
    esac
}

# A daemon's service in party $i: <service> <config file> <subcommand>. Lines printed after
# it (the roll-site's other networks, depends_on) extend the service.
daemon() {
    cat <<EOF
  $1:
    <<: *eggroll
    hostname: $1
    command: ["--config", "/etc/eggroll/$2", "$3"]
    volumes:
      - ./conf:/etc/eggroll:ro
      - $1-data:/var/lib/eggroll
    networks:
      party:
        ipv4_address: $(ip_of "$i" "$1")
EOF
}

# Where party <index> is reached by the others.
peer_address() {
    if [ ${#partyiplist[@]} -gt 0 ]; then echo "${partyiplist[$1]}"; else echo "rollsite-${partylist[$1]}"; fi
}
peer_port() { if [ "$tls" = 1 ]; then echo 9371; else echo 9370; fi; }

# A CA and a roll-site certificate per party, as each party would make its own (GUIDE.md,
# "TLS certificates"). The certificate names the address the other parties dial.
make_tls() { # <party index> <dir>
    local id="${partylist[$1]}" dir="$2" san
    san="DNS:rollsite-$id"
    if [ ${#partyiplist[@]} -gt 0 ]; then
        if [[ "${partyiplist[$1]}" =~ ^[0-9.]+$ ]]; then san="$san,IP:${partyiplist[$1]}"; else san="$san,DNS:${partyiplist[$1]}"; fi
    fi
    mkdir -p "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -subj "/O=party $id/CN=eggroll trial CA $id" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        >/dev/null 2>&1 || die "openssl could not make the CA of party $id (needs OpenSSL 1.1.1 or later)"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/party.key" \
        -out "$dir/party.csr" -subj "/O=party $id/CN=rollsite $id" >/dev/null 2>&1 \
        || die "openssl could not make the key of party $id"
    printf '%s\n' "subjectAltName=$san" 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth,clientAuth' >"$dir/party.ext"
    openssl x509 -req -in "$dir/party.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 30 -extfile "$dir/party.ext" -out "$dir/party.crt" >/dev/null 2>&1 \
        || die "openssl could not sign the certificate of party $id"
    rm -f "$dir/party.csr" "$dir/party.ext" "$dir/ca.srl"
}

rm -rf "$out"
if [ "$tls" = 1 ]; then
    command -v openssl >/dev/null || die "tls=1 in $conf needs openssl (Debian: apt-get install openssl), or set tls=0"
    # The CAs' keys stay out of the bundles: a party's bundle gets its own certificate and key
    # and the other parties' CA certificates only.
    for i in "${!partylist[@]}"; do make_tls "$i" "$out/.tls/party-${partylist[$i]}"; done
fi
for i in "${!partylist[@]}"; do
    id="${partylist[$i]}"
    dir="$out/party-$id"
    mkdir -p "$dir/conf"
    nms="${nodemanagers[$i]}"
    subnet="$subnet_base.$((i + 1)).0/24"
    clients="$(ip_of "$i" job)"
    for k in $(seq 1 "$nms"); do clients="$clients,$(ip_of "$i" "nodemanager-$k")"; done

    cat >"$dir/conf/clustermanager.toml" <<EOF
# Party $id: cluster manager. Generated from $(basename "$conf"); edit that and regenerate.
data_dir = "/var/lib/eggroll/clustermanager"
logs_dir = "/var/log/eggroll"

[clustermanager]
# The container's name on the party network: it binds there and node managers dial it.
host = "clustermanager"
port = 4670
heartbeat_timeout_ms = 10000

[session]
processors_per_node = $processors_per_node
start_timeout_ms = 60000
EOF
    for k in $(seq 1 "$nms"); do
        cat >"$dir/conf/nodemanager-$k.toml" <<EOF
# Party $id: node manager $k. Generated from $(basename "$conf"); edit that and regenerate.
data_dir = "/var/lib/eggroll/data"
logs_dir = "/var/log/eggroll"

[clustermanager]
host = "clustermanager"
port = 4670

[nodemanager]
# Its hostname on the party network: it binds there, and its eggs listen there on ports the
# OS picks, so clients of the party must reach every port of this container.
host = "nodemanager-$k"
port = 4671
heartbeat_interval_ms = 2000
EOF
    done

    tls_conf=""
    if [ "$tls" = 1 ]; then
        mkdir -p "$dir/conf/tls"
        cp "$out/.tls/party-$id/party.crt" "$out/.tls/party-$id/party.key" "$dir/conf/tls/"
        : >"$dir/conf/tls/trusted-cas.pem"
        for j in "${!partylist[@]}"; do
            [ "$j" = "$i" ] || cat "$out/.tls/party-${partylist[$j]}/ca.crt" >>"$dir/conf/tls/trusted-cas.pem"
        done
        # The daemons run as uid 10001 in the containers: the key must be readable by it and
        # by no one else. Without root, fall back to world-readable (a trial key on this host).
        if chown 10001 "$dir/conf/tls/party.key" 2>/dev/null; then chmod 0400 "$dir/conf/tls/party.key"
        else chmod 0644 "$dir/conf/tls/party.key"; fi
        tls_conf="
# Mutual TLS with the other parties: this party's certificate, and their CAs.
secure_port = 9371
tls_cert = \"/etc/eggroll/tls/party.crt\"
tls_key = \"/etc/eggroll/tls/party.key\"
tls_ca = \"/etc/eggroll/tls/trusted-cas.pem\""
    fi
    cat >"$dir/conf/rollsite.toml" <<EOF
# Party $id: roll-site, the only service other parties reach. Generated from
# $(basename "$conf"); edit that and regenerate.
data_dir = "/var/lib/eggroll"
logs_dir = "/var/log/eggroll"

[rollsite]
party_id = "$id"
# Every network of the container: the party's own and the one the other parties come from.
host = "0.0.0.0"
port = 9370
route_table = "/etc/eggroll/route_table.json"
# Only these (the job container, and the node managers in case eggs move tables) may
# pull what other parties sent; the other parties' roll-sites may only push.
local_clients = "$clients"
# Tables other parties send go straight into this party's eggs (rollsite_inbox/...).
cluster_manager = "clustermanager:4670"$tls_conf
EOF

    cat >"$dir/conf/client.toml" <<EOF
# Party $id: what jobs and operator commands in the party need.
[clustermanager]
host = "clustermanager"
port = 4670

[rollsite]
# The party's roll-site, through which jobs reach the other parties.
host = "rollsite"
port = 9370
# A job waiting for the other party fails after this long without any data from it (the
# default, 10 minutes, suits real jobs; the trial wants failures within a bound).
get_idle_timeout_ms = 60000
EOF

    {
        echo '{"route_table": {'
        sep=""
        for j in "${!partylist[@]}"; do
            [ "$j" = "$i" ] && continue
            printf '%s  "%s": {"default": [{"ip": "%s", "port": %s, "use_ssl": %s}]}' "$sep" \
                "${partylist[$j]}" "$(peer_address "$j")" "$(peer_port)" "$([ "$tls" = 1 ] && echo true || echo false)"
            sep=$',\n'
        done
        printf '\n },\n "permission": {"default_allow": false},\n "self_party": ["%s"]}\n' "$id"
    } >"$dir/conf/route_table.json"

    {
        cat <<EOF
# Party $id (${partyroles[$i]}): roll-site, cluster manager, $nms node manager(s), and a job
# service to run commands in (docker-compose run --rm job ...). Generated from
# $(basename "$conf") by generate.sh; edit that and regenerate.
x-eggroll: &eggroll
  image: \${EGGROLL_IMAGE:-eggroll-rs:trial}
  # tini as PID 1: forwards SIGTERM and reaps the egg processes of ended sessions.
  init: true
  environment:
    EGGROLL_LOG: \${EGGROLL_LOG:-info}
    NO_COLOR: "1"
  # A daemon that exits is started again; one stopped with docker stop/kill stays stopped.
  restart: unless-stopped

services:
EOF
        daemon rollsite rollsite.toml rollsite
        if [ ${#partyiplist[@]} -gt 0 ]; then
            cat <<EOF
      public: {}
    # The only port other parties reach.
    ports:
      - "$(peer_port):$(peer_port)"
EOF
        else
            cat <<EOF
      exchange:
        aliases: [rollsite-$id]
EOF
        fi
        echo
        daemon clustermanager clustermanager.toml clustermanager
        for k in $(seq 1 "$nms"); do
            echo
            daemon "nodemanager-$k" "nodemanager-$k.toml" nodemanager
            echo "    depends_on: [clustermanager]"
        done
        cat <<EOF

  # Runs jobs and operator commands inside the party, e.g.
  #   docker-compose run --rm job node list
  job:
    <<: *eggroll
    hostname: job
    profiles: ["job"]
    command: ["--help"]
    environment:
      EGGROLL_LOG: \${EGGROLL_LOG:-warn}
      NO_COLOR: "1"
      EGGROLL_CONFIG: /etc/eggroll/client.toml
    volumes:
      - ./conf:/etc/eggroll:ro
    networks:
      party:
        ipv4_address: $(ip_of "$i" job)

volumes:
  rollsite-data: {}
  clustermanager-data: {}
EOF
        for k in $(seq 1 "$nms"); do echo "  nodemanager-$k-data: {}"; done
        cat <<EOF

networks:
  # The party's own network: no route out of it (internal), so only the roll-site, which is
  # also on the network below, talks to other parties.
  party:
    internal: true
    ipam:
      config:
        - subnet: $subnet
EOF
        if [ ${#partyiplist[@]} -gt 0 ]; then
            cat <<EOF
  # Where the roll-site's published ports are reached from other hosts.
  public: {}
EOF
        else
            cat <<EOF
  # Shared with the other parties' roll-sites only; created before the bundles start:
  #   docker network create --internal --subnet $subnet_base.250.0/24 $exchange
  exchange:
    external: true
    name: $exchange
EOF
        fi
    } >"$dir/docker-compose.yml"
    echo "generate: party $id (${partyroles[$i]}): $dir ($nms node manager(s), subnet $subnet, tls=$tls)"
done
