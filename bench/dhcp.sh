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
# perfdhcp shares the two cores with the server and sends no more than
# about 27,000 requests a second here, so its flat-out row stops at
# perfdhcp. The saturation part floods each server instead with trafgen
# (netsniff-ng): the same relayed DISCOVERs from the same number of MACs,
# sent flat out from a packet ring by one process on the first CPU. A
# server's answers are counted in the client namespace, where nothing
# listens on port 67 (Udp NoPorts in /proc/net/snmp), over SAT_PERIOD
# seconds after a second's start, SAT_ROUNDS rounds in turns. dnsmasq logs
# every answer unless told --quiet-dhcp: it is measured both ways. SERVERS
# names the servers of both parts.
#
#   sudo bench/dhcp.sh            rates 1000 5000 10000 and flat out, 3 rounds of 5 s each; saturation, 3 rounds of 4 s
#   RATES="5000" PERIOD=5 ROUNDS=1 SERVERS=provisiond sudo bench/dhcp.sh
#   RATES= SAT_ROUNDS=5 sudo bench/dhcp.sh     saturation only
#   SAT_ROUNDS=0 sudo bench/dhcp.sh            no saturation part
source "$(dirname "$0")/lib.sh"
need_root
need perfdhcp dnsmasq xxd trafgen

RATES=${RATES-1000 5000 10000 max}
PERIOD=${PERIOD:-5}
ROUNDS=${ROUNDS:-3}
SAT_ROUNDS=${SAT_ROUNDS:-3}
SAT_PERIOD=${SAT_PERIOD:-4}
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

# start_dnsmasq [ARG...]: dnsmasq in proxy mode with a PXE service, and
# ARGs; DNSMASQ_PID is its process.
start_dnsmasq() {
	start dnsmasq srv dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=v-srv --bind-interfaces \
		--dhcp-range=192.0.2.0,proxy,255.255.255.0 --pxe-service=x86PC,"network boot",undionly \
		--dhcp-leasefile="$WORK/dnsmasq.leases" --pid-file= --log-facility="$WORK/dnsmasq-dhcp.log" "$@"
	wait_port "$SRV_NS" udp 67
	DNSMASQ_PID=$(server_pid "$LAST_PID")
}

run_dnsmasq() {
	start_dnsmasq
	run_server dnsmasq "$DNSMASQ_PID"
	stop_all
}

SERVERS=${SERVERS:-provisiond dnsmasq}
read -ra order <<<"$SERVERS"
[[ -n $RATES ]] && take_turns "${order[@]}"

# fieldmax RUNS_KEY N: the largest of field N over the rounds.
fieldmax() { awk -v n="$2" 'NF && $n + 0 > m { m = $n + 0 } END { print m + 0 }' <<<"${RUNS[$1]}"; }
# R[server,rate]: the medians, in perf's order, then the CPU per answer.
declare -A R
for k in "${!RUNS[@]}"; do
	R[$k]="$(field "$k" 1) $(field "$k" 2) $(field "$k" 3) $(fieldmax "$k" 4) $(field "$k" 5) $(field "$k" 6) $(field "$k" 7)"
done

[[ -n $RATES ]] && result "" "## ProxyDHCP (perfdhcp, PXE DISCOVER -> proxy OFFER, 1,000 clients, ${PERIOD} s per rate, median of $ROUNDS rounds)" "" \
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

# discover_conf FILE: trafgen's packets, one per client MAC (1,000, as
# perfdhcp's -R): a relayed PXE DISCOVER (options 53, 60, 93, 94, 97, a
# random xid each time it is sent) from the client's address to the
# server's port 67, in an Ethernet frame to the server's interface.
discover_conf() {
	awk -v smac="$(srv cat /sys/class/net/v-srv/address)" -v cmac="$(cli cat /sys/class/net/v-cli/address)" \
		-v cip="$CLI_IP" -v sip="$SRV_IP" -v class='PXEClient:Arch:00000:UNDI:002001' 'BEGIN {
		m = split(smac, a, ":"); for (i = 1; i <= m; i++) eth = eth sprintf("0x%s, ", a[i])
		m = split(cmac, a, ":"); for (i = 1; i <= m; i++) eth = eth sprintf("0x%s, ", a[i])
		gsub(/\./, ", ", cip); gsub(/\./, ", ", sip)
		for (i = 1; i <= length(class); i++) opt60 = opt60 sprintf("%s\x27%s\x27", (i > 1 ? ", " : ""), substr(class, i, 1))
		# BOOTP 236 bytes, the cookie, options 53 (3), 60 (34), 93 (4), 94 (5), 97 (19), end (1).
		blen = 236 + 4 + 3 + 2 + length(class) + 4 + 5 + 19 + 1
		for (n = 0; n < 1000; n++) {
			printf "{ %sc16(0x0800),\n", eth
			printf "  0x45, 0, c16(%d), c16(0), c16(0), 64, 17, csumip(14, 33), %s, %s,\n", blen + 28, cip, sip
			printf "  c16(67), c16(67), c16(%d), c16(0),\n", blen + 8
			printf "  1, 1, 6, 1, drnd(4), c16(0), c16(0), fill(0, 12), %s,\n", cip
			printf "  0x52, 0x54, 0x02, 0x00, %d, %d, fill(0, 202),\n", int(n / 256), n % 256
			printf "  0x63, 0x82, 0x53, 0x63, 53, 1, 1, 60, %d, %s, 93, 2, 0, 0, 94, 3, 1, 2, 1, 97, 17, 0, fill(0, 15), 42, 255 }\n", length(class), opt60
		}
	}' >"$1"
}

# udp_counter NS FIELD: a field of the namespace's Udp counters (2
# InDatagrams, 3 NoPorts, 6 RcvbufErrors).
udp_counter() { ip netns exec "$1" awk -v f="$2" '/^Udp: [0-9]/ { print $f }' /proc/net/snmp; }

# saturate PID: trafgen floods the server running as PID for a second,
# then SAT_PERIOD seconds more; prints the answers a second, the requests
# its socket dropped a second, and its CPU (per cent of one core) during
# the SAT_PERIOD seconds.
saturate() {
	local pid=$1 tg a b d0 d1 c0 c1
	start trafgen cli trafgen --dev v-cli --conf "$WORK/discover.cfg" --cpus 1 --no-cpu-stats
	tg=$LAST_PID
	sleep 1
	a=$(udp_counter "$CLI_NS" 3) d0=$(udp_counter "$SRV_NS" 6) c0=$(cpu_ticks "$pid")
	sleep "$SAT_PERIOD"
	b=$(udp_counter "$CLI_NS" 3) d1=$(udp_counter "$SRV_NS" 6) c1=$(cpu_ticks "$pid")
	stop "$tg"
	sleep 0.5 # what the server still had queued
	echo "$(((b - a) / SAT_PERIOD)) $(((d1 - d0) / SAT_PERIOD)) $(((c1 - c0) * 100 / TICK / SAT_PERIOD))"
}

# RUNS[sat,server]: a line per round, saturate's fields and the steal.
sat_server() {
	local out
	out=$(calm saturate "$2")
	RUNS[sat,$1]+="$out"$'\n'
	log "dhcp $1 flooded, round $ROUND: $out (answers/s, dropped/s, CPU %, steal %)"
}
sat_provisiond() {
	start_provisiond
	sat_server provisiond "$PROVISIOND_PID"
	rss_keep "$PROVISIOND_PID"
	stop_all
}
sat_dnsmasq() {
	start_dnsmasq
	sat_server dnsmasq "$DNSMASQ_PID"
	stop_all
}
sat_dnsmasq_quiet() {
	start_dnsmasq --quiet-dhcp
	sat_server dnsmasq_quiet "$DNSMASQ_PID"
	stop_all
}

if ((SAT_ROUNDS > 0)); then
	discover_conf "$WORK/discover.cfg"
	# SERVERS' dnsmasq is measured both ways.
	read -ra flooded <<<"${SERVERS/dnsmasq/dnsmasq dnsmasq_quiet}"
	ROUNDS=$SAT_ROUNDS TURN=sat take_turns "${flooded[@]}"
	P=$(field sat,provisiond 1)
	result "" "## ProxyDHCP saturation (trafgen flat out from one CPU, 1,000 MACs, answers counted over ${SAT_PERIOD} s; median of $SAT_ROUNDS rounds in turns)" "" \
		"| server | answers/s | per round | requests its socket dropped /s | server CPU | provisiond vs it |" \
		"|---|---|---|---|---|---|"
	for s in "${flooded[@]}"; do
		label=$s
		[[ $s == dnsmasq_quiet ]] && label="dnsmasq --quiet-dhcp"
		rounds=$(awk 'NF { printf "%s%s (%s %% steal)", sep, $1, $4; sep = " / " }' <<<"${RUNS[sat,$s]}")
		v=$(field "sat,$s" 1)
		vs=–
		[[ -n $P ]] && vs="$(ratio "$P" "$v")×"
		result "| $label | $v | $rounds | $(field "sat,$s" 2) | $(field "sat,$s" 3) % | $vs |"
	done
fi
if [[ -n ${PROV_RSS:-} ]]; then
	result "" "provisiond peak RSS during the DHCP runs: $((PROV_RSS / 1024)) MiB"
fi
