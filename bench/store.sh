#!/usr/bin/env bash
# The two stores side by side: provisiond on its bbolt file, then on a
# one-member etcd (Debian's etcd-server) in the server namespace. perfdhcp
# measures ProxyDHCP latency (the boot path reads a table in memory on
# etcd: it should not move), then Go benchmarks measure an API write, a
# boot step and the DHCP lookup on each store.
#
#   sudo bench/store.sh           5,000 DISCOVERs/s for 10 s against each
#   RATE=1000 PERIOD=5 sudo bench/store.sh
source "$(dirname "$0")/lib.sh"
need_root
need perfdhcp xxd /usr/bin/etcd

RATE=${RATE:-5000}
PERIOD=${PERIOD:-10}
lab_up
perf() { pxe_perf "$RATE" "$PERIOD"; }

# Each server settles (its first writes, etcd's first fsyncs) before the
# clients start.
settle() { sleep "${SETTLE:-3}"; }
declare -A R
start_provisiond
settle
R[bbolt]=$(perf)
log "dhcp on bbolt at $RATE/s: ${R[bbolt]}"
stop_all

rm -rf "$WORK/etcd"
start etcd srv /usr/bin/etcd --name bench --data-dir "$WORK/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster bench=http://127.0.0.1:2380 --max-txn-ops 8192
wait_port "$SRV_NS" tcp 2379
printf 'store: etcd\netcd:\n  endpoints: [http://127.0.0.1:2379]\n' >"$WORK/store-etcd.yaml"
PROVISIOND_CONF=$WORK/store-etcd.yaml start_provisiond
settle
R[etcd]=$(perf)
log "dhcp on etcd at $RATE/s: ${R[etcd]}"
stop "${PIDS[-1]}"
# The same with no discovered machines stored: what is left is the answer
# itself, not the timeline writes of 1,000 new machines.
printf 'max_discovered: 0\nstore: etcd\netcd:\n  endpoints: [http://127.0.0.1:2379]\n  prefix: /nodisc/\n' >"$WORK/store-etcd-nodisc.yaml"
PROVISIOND_CONF=$WORK/store-etcd-nodisc.yaml start_provisiond
settle
R[etcd-nodisc]=$(perf)
log "dhcp on etcd, max_discovered 0, at $RATE/s: ${R[etcd-nodisc]}"
stop_all

(cd "$REPO" && go test -count=1 -run '^$' -bench '^BenchmarkStore$' -benchtime "${BENCHTIME:-300x}" ./internal/inventory) |
	grep '^Benchmark' | tee "$WORK/store.out" >&2

result "" "## The stores: bbolt and etcd (one member, same machine)" "" \
	"ProxyDHCP, perfdhcp at $RATE DISCOVERs/s for $PERIOD s, 1,000 clients:" "" \
	"| store | offers/s | drops | avg latency | max latency |" "|---|---|---|---|---|"
for s in bbolt etcd etcd-nodisc; do
	read -r ops drops avg max _ <<<"${R[$s]}"
	label=$s
	[[ $s == etcd-nodisc ]] && label="etcd, \`max_discovered: 0\`"
	result "| $label | $ops | $drops % | $avg ms | $max ms |"
done
result "" "Go benchmarks (\`BenchmarkStore\`, 100 machines):" "" "| operation | bbolt | etcd | etcd / bbolt |" "|---|---|---|---|"
for op in PutMachine AppendEvent BootSettingsByMAC; do
	b=$(awk -v k="BenchmarkStore/$op/bbolt" 'index($1, k) == 1 { print $3 }' "$WORK/store.out")
	e=$(awk -v k="BenchmarkStore/$op/etcd" 'index($1, k) == 1 { print $3 }' "$WORK/store.out")
	fmt() { awk -v ns="$1" 'BEGIN { if (ns >= 1e6) printf "%.2f ms", ns / 1e6; else if (ns >= 1e3) printf "%.1f µs", ns / 1e3; else printf "%.0f ns", ns }'; }
	result "| $op | $(fmt "$b") | $(fmt "$e") | $(ratio "$e" "$b")× |"
done
