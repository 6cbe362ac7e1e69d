#!/usr/bin/env bash
# The network lab: runs a command inside a fresh network namespace where all
# of 127.0.0.0/8 (and ::1) answers pings, and nftables rules make chosen
# loopback ranges silent (down), lossy at random, or flapping. No packet ever
# leaves the namespace. See deploy/lab/README.md.
#
#   deploy/lab/lab.sh [--down CIDR]... [--lossy CIDR:PERCENT]...
#                     [--flap CIDR:UP_S:DOWN_S]... -- COMMAND ARGS...
#
# Exits with COMMAND's status; prints nothing but errors. Must run as root.
set -euo pipefail

die() {
  echo "lab.sh: $*" >&2
  exit 2
}

usage() {
  die "usage: lab.sh [--down CIDR]... [--lossy CIDR:PERCENT]... [--flap CIDR:UP_S:DOWN_S]... -- COMMAND ARGS..."
}

downs=()
lossies=()
flaps=()
while (($#)); do
  case "$1" in
    --down) (($# >= 2)) || usage; downs+=("$2"); shift 2 ;;
    --lossy) (($# >= 2)) || usage; lossies+=("$2"); shift 2 ;;
    --flap) (($# >= 2)) || usage; flaps+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
(($#)) || usage
((EUID == 0)) || die "must run as root (it creates a network namespace and nftables rules)"
for tool in unshare ip nft; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (apt-get install util-linux iproute2 nftables)"
done

# Only loopback ranges may be made silent or lossy: the lab never touches a
# real network, and a CIDR outside loopback would be a mistake.
family_of() {
  case "$1" in
    127.*) echo ip ;;
    ::1 | ::1/128) echo ip6 ;;
    *) die "not a loopback range: $1 (use 127.0.0.0/8 or ::1)" ;;
  esac
}

# Match on echo requests entering the stack (input hook): a drop there is
# silence, whereas a drop on output would fail the sender's sendto() with
# EPERM and look like a local error instead of a dead device.
match_requests() {
  local cidr=$1 family
  family=$(family_of "$cidr")
  if [[ $family == ip ]]; then
    echo "ip daddr $cidr icmp type echo-request"
  else
    echo "ip6 daddr $cidr icmpv6 type echo-request"
  fi
}

match_replies() {
  local cidr=$1 family
  family=$(family_of "$cidr")
  if [[ $family == ip ]]; then
    echo "ip saddr $cidr icmp type echo-reply"
  else
    echo "ip6 saddr $cidr icmpv6 type echo-reply"
  fi
}

ruleset() {
  echo "table inet netward_lab {"
  echo "  chain input {"
  echo "    type filter hook input priority 0; policy accept;"
  local spec cidr pct i
  for cidr in "${downs[@]}"; do
    echo "    $(match_requests "$cidr") drop"
    echo "    $(match_replies "$cidr") drop"
  done
  for spec in "${lossies[@]}"; do
    cidr=${spec%:*}
    pct=${spec##*:}
    [[ $cidr != "$spec" && $pct =~ ^[0-9]+$ ]] && ((pct <= 100)) || die "bad --lossy $spec (want CIDR:PERCENT)"
    # Requests only: dropping both ways would compound the rate.
    echo "    $(match_requests "$cidr") numgen random mod 100 < $pct drop"
  done
  for i in "${!flaps[@]}"; do
    echo "    jump flap_$i"
  done
  echo "  }"
  for i in "${!flaps[@]}"; do
    echo "  chain flap_$i {"
    echo "  }"
  done
  echo "}"
}

# Inside the namespace (lab.sh re-runs itself there).
inner() {
  ip link set lo up
  # Unprivileged ICMP sockets for every group, as a normal host would allow.
  echo "0 2147483647" >/proc/sys/net/ipv4/ping_group_range
  ruleset | nft -f - || die "nft rejected the lab rules"

  local pids=() i spec cidr up down
  for i in "${!flaps[@]}"; do
    spec=${flaps[$i]}
    read -r cidr up down <<<"$(flap_fields "$spec")"
    (
      # Up first for UP_S seconds, then down for DOWN_S, forever.
      while true; do
        sleep "$up"
        nft add rule inet netward_lab "flap_$i" "$(match_requests "$cidr")" drop
        sleep "$down"
        nft flush chain inet netward_lab "flap_$i"
      done
    ) &
    pids+=($!)
  done

  export NETWARD_LAB=1
  local status=0
  "$@" || status=$?
  if ((${#pids[@]})); then
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  exit "$status"
}

# CIDR:UP:DOWN, where the CIDR may itself contain colons (IPv6).
flap_fields() {
  local spec=$1 down up cidr
  down=${spec##*:}
  spec=${spec%:*}
  up=${spec##*:}
  cidr=${spec%:*}
  [[ $cidr != "$spec" && $up =~ ^[0-9.]+$ && $down =~ ^[0-9.]+$ ]] || die "bad --flap $1 (want CIDR:UP_S:DOWN_S)"
  family_of "$cidr" >/dev/null
  echo "$cidr $up $down"
}

# Validate everything before creating the namespace.
for cidr in "${downs[@]}"; do family_of "$cidr" >/dev/null; done
for spec in "${lossies[@]}"; do family_of "${spec%:*}" >/dev/null; done
for spec in "${flaps[@]}"; do flap_fields "$spec" >/dev/null; done

if [[ ${NETWARD_LAB_INNER:-} == 1 ]]; then
  unset NETWARD_LAB_INNER
  inner "$@"
fi
export NETWARD_LAB_INNER=1
args=()
for cidr in "${downs[@]}"; do args+=(--down "$cidr"); done
for spec in "${lossies[@]}"; do args+=(--lossy "$spec"); done
for spec in "${flaps[@]}"; do args+=(--flap "$spec"); done
exec unshare --net -- "$BASH" "$0" "${args[@]}" -- "$@"
