#!/usr/bin/env bash
# ProxyDHCP: perfdhcp (Kea) sends PXE DISCOVERs (options 60, 93, 94, 97) from
# 1,000 client MACs at fixed rates and flat out, to provisiond and to
# dnsmasq in proxy mode; both answer with a boot offer and no address.
# perfdhcp plays a relay (giaddr set), as a switch's DHCP helper would, so
# answers come back unicast and both servers take the same path.
#
# The machine is shared and noisy: a burst of someone else's work can
# double one run's latency. So the servers take turns, ROUNDS times (in
# alternating order), and the table gives each figure's median over the
# rounds (the worst for max latency), with every round's average latency
# and the share of the CPU the hypervisor gave other guests meanwhile (a
# round with more than STEAL_MAX per cent is taken again: lib.sh's calm).
#
#   sudo bench/dhcp.sh            rates 1000 5000 10000 and flat out, 3 rounds of 5 s each
#   RATES="5000" PERIOD=5 ROUNDS=1 SERVERS=provisiond sudo bench/dhcp.sh
source "$(dirname "$0")/lib.sh"
need_root
need perfdhcp dnsmasq xxd

RATES=${RATES:-1000 5000 10000 max}
PERIOD=${PERIOD:-5}
ROUNDS=${ROUNDS:-3}
# "Flat out" asks for more than either server can answer on this machine.
MAX_RATE=${MAX_RATE:-100000}

lab_up

# perfdhcp run RATE: one run; prints "offers/s drops% avg_ms max_ms sent received".
perf() { pxe_perf "$1" "$PERIOD"; }

# measure PID RATE: one perfdhcp run against the server running as PID;
# prints perf's fields, then the server's CPU microseconds per answer
# (user and system time over answers received).
measure() {
	local pid=$1 t0 t1 out
	t0=$(cpu_ticks "$pid")
	out=$(perf "$2")
	t1=$(cpu_ticks "$pid")
	echo "$out $(awk -v t=$((t1 - t0)) -v hz="$TICK" -v n="$(awk '{print $6}' <<<"$out")" 'BEGIN { if (n > 0) printf "%.1f", t / hz / n * 1e6; else print "?" }')"
}

# RUNS[server,rate]: a line per round: measure's fields, then the
# hypervisor's steal during it (per cent).
declare -A RUNS
run_server() {
	local name=$1 pid=$2 rate
	for rate in $RATES; do
		local r=$rate out
		[[ $rate == max ]] && r=$MAX_RATE
		out=$(calm measure "$pid" "$r")
		RUNS[$name,$rate]+="$out"$'\n'
		log "dhcp $name at $rate/s, round $ROUND: $out"
	done
}

run_provisiond() {
	start_provisiond
	run_server provisiond "$PROVISIOND_PID"
	rss_keep "$PROVISIOND_PID"
	stop_all
}

run_dnsmasq() {
	start dnsmasq srv dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=v-srv --bind-interfaces \
		--dhcp-range=192.0.2.0,proxy,255.255.255.0 --pxe-service=x86PC,"network boot",undionly \
		--dhcp-leasefile="$WORK/dnsmasq.leases" --pid-file= --log-facility="$WORK/dnsmasq-dhcp.log"
	wait_port "$SRV_NS" udp 67
	run_server dnsmasq "$(server_pid "$LAST_PID")"
	stop_all
}

SERVERS=${SERVERS:-provisiond dnsmasq}
read -ra order <<<"$SERVERS"
take_turns "${order[@]}"

# fieldmax RUNS_KEY N: the largest of field N over the rounds.
fieldmax() { awk -v n="$2" 'NF && $n + 0 > m { m = $n + 0 } END { print m + 0 }' <<<"${RUNS[$1]}"; }
# R[server,rate]: the medians, in perf's order, then the CPU per answer.
declare -A R
for k in "${!RUNS[@]}"; do
	R[$k]="$(field "$k" 1) $(field "$k" 2) $(field "$k" 3) $(fieldmax "$k" 4) $(field "$k" 5) $(field "$k" 6) $(field "$k" 7)"
done

result "" "## ProxyDHCP (perfdhcp, PXE DISCOVER -> proxy OFFER, 1,000 clients, ${PERIOD} s per rate, median of $ROUNDS rounds)" "" \
	"| rate asked | server | offers/s | drops | avg latency | avg latency per round (steal) | max latency | CPU per answer |" \
	"|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
	for s in $SERVERS; do
		read -r ops drops avg max _ _ cpu <<<"${R[$s,$rate]}"
		label=$rate
		[[ $rate == max ]] && label="flat out ($MAX_RATE)"
		rounds=$(awk 'NF { printf "%s%s (%s %%)", sep, $3, $8; sep = " / " }' <<<"${RUNS[$s,$rate]}")
		result "| $label | $s | $ops | $drops % | $avg ms | $rounds | $max ms | $cpu µs |"
	done
done
# What each could answer with the machine to itself, from its CPU per
# answer at the highest fixed rate: perfdhcp shares the cores, so the
# flat-out row measures perfdhcp as much as the server. dnsmasq answers
# on one thread (one core); provisiond has a reader per CPU.
top=""
for rate in $RATES; do [[ $rate != max ]] && top=$rate; done
if [[ -n $top && $SERVERS == *provisiond* && $SERVERS == *dnsmasq* ]]; then
	read -r _ _ _ _ _ _ pc <<<"${R[provisiond,$top]}"
	read -r _ _ _ _ _ _ dc <<<"${R[dnsmasq,$top]}"
	ncpu=$(nproc)
	result "" "$(awk -v p="$pc" -v d="$dc" -v n="$ncpu" -v r="$top" 'BEGIN {
		if (p + 0 > 0 && d + 0 > 0) printf "Capacity from the CPU per answer at %d/s: dnsmasq (one thread) 1e6 / %.1f µs = %.0f answers/s; provisiond (a reader per CPU, %d CPUs) %d × 1e6 / %.1f µs = %.0f answers/s: %.2f×", r, d, 1e6 / d, n, n, p, n * 1e6 / p, (n * 1e6 / p) / (1e6 / d) }')"
fi
[[ -n ${PROV_RSS:-} ]] && result "" "provisiond peak RSS during the DHCP runs: $((PROV_RSS / 1024)) MiB"
