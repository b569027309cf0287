#!/usr/bin/env bash
# ProxyDHCP: perfdhcp (Kea) sends PXE DISCOVERs (options 60, 93, 94, 97) from
# 1,000 client MACs at fixed rates and flat out, first to provisiond, then to
# dnsmasq in proxy mode; both answer with a boot offer and no address.
# perfdhcp plays a relay (giaddr set), as a switch's DHCP helper would, so
# answers come back unicast and both servers take the same path.
#
#   sudo bench/dhcp.sh            rates 1000 5000 10000 and flat out, 10 s each
#   RATES="5000" PERIOD=5 SERVERS=provisiond sudo bench/dhcp.sh
source "$(dirname "$0")/lib.sh"
need_root
need perfdhcp dnsmasq xxd

RATES=${RATES:-1000 5000 10000 max}
PERIOD=${PERIOD:-10}
# "Flat out" asks for more than either server can answer on this machine.
MAX_RATE=${MAX_RATE:-100000}

lab_up

# perfdhcp run RATE: one run; prints "offers/s drops% avg_ms max_ms sent received".
perf() { pxe_perf "$1" "$PERIOD"; }

declare -A R
run_server() {
	local name=$1 rate
	for rate in $RATES; do
		local r=$rate
		[[ $rate == max ]] && r=$MAX_RATE
		R[$name,$rate]=$(perf "$r")
		log "dhcp $name at $rate/s: ${R[$name,$rate]}"
	done
}

SERVERS=${SERVERS:-provisiond dnsmasq}
if [[ $SERVERS == *provisiond* ]]; then
	start_provisiond
	run_server provisiond
	PROV_RSS=$(rss_peak "$PROVISIOND_PID")
	stop_all
fi

if [[ $SERVERS == *dnsmasq* ]]; then
	start dnsmasq srv dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=v-srv --bind-interfaces \
		--dhcp-range=192.0.2.0,proxy,255.255.255.0 --pxe-service=x86PC,"network boot",undionly \
		--dhcp-leasefile="$WORK/dnsmasq.leases" --pid-file= --log-facility="$WORK/dnsmasq-dhcp.log"
	wait_port "$SRV_NS" udp 67
	run_server dnsmasq
	stop_all
fi

result "" "## ProxyDHCP (perfdhcp, PXE DISCOVER -> proxy OFFER, 1,000 clients, ${PERIOD} s per rate)" "" \
	"| rate asked | server | offers/s | drops | avg latency | max latency |" \
	"|---|---|---|---|---|---|"
for rate in $RATES; do
	for s in $SERVERS; do
		read -r ops drops avg max _ <<<"${R[$s,$rate]}"
		label=$rate
		[[ $rate == max ]] && label="flat out ($MAX_RATE)"
		result "| $label | $s | $ops | $drops % | $avg ms | $max ms |"
	done
done
[[ -n ${PROV_RSS:-} ]] && result "" "provisiond peak RSS during the DHCP runs: $((PROV_RSS / 1024)) MiB"
