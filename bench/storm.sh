#!/usr/bin/env bash
# Boot storm: bench/storm plays CLIENTS machines booting at once (PXE ROM
# DHCP, TFTP of undionly.kpxe, iPXE DHCP, HTTP scripts, kernel and initrd,
# booted callback) against provisiond with CLIENTS machines in its
# inventory on the linux profile.
#
# All simulated machines share the client namespace's one address, so
# provisiond cannot tell which of them fetched an iPXE binary over TFTP
# (that is how it recognises its own iPXE); the run sets
# boot.chain_ipxe: never, so any HTTP-capable iPXE gets its script at once.
#
# HTTP_MAX sets http.max_connections (4096, the default) and the bound per
# client address (the simulated machines share one): behind 1,024
# connections, 5,000 machines overflowed the kernel's accept queue (4,096)
# and some of their connections were reset. TFTP_MAX sets tftp.max_transfers
# (the daemon's default, 4096, when unset): at 256, the last of the queue
# waited longer than the clients' patience (2 s, 5 retries).
#
#   sudo bench/storm.sh
#   CLIENTS=200 KERNEL_MIB=8 sudo bench/storm.sh
#   HTTP_MAX=1024 sudo bench/storm.sh
#   TFTP_MAX=256 sudo bench/storm.sh
source "$(dirname "$0")/lib.sh"
need_root

CLIENTS=${CLIENTS:-5000}
KERNEL_MIB=${KERNEL_MIB:-4}
INITRD_MIB=${INITRD_MIB:-8}

lab_up
fill "$WORK/assets/storm-vmlinuz" "$KERNEL_MIB"
fill "$WORK/assets/storm-initrd" "$INITRD_MIB"
(cd "$REPO" && go build -o "$WORK/storm" ./bench/storm)

# One address speaks for 1,000 MACs, which the neighbour table cannot
# confirm: the client's network is declared trusted (as a DHCP relay's far
# side would be), and it may hold as many connections as the daemon takes.
cat >"$WORK/storm.yaml" <<EOF
max_discovered: 0
http:
  max_connections: ${HTTP_MAX:-4096}
  max_connections_per_source: ${HTTP_MAX:-4096}
  rate_per_source: 0
boot:
  chain_ipxe: never
  trusted_sources: [192.0.2.0/24]
${TFTP_MAX:+tftp: {max_transfers: $TFTP_MAX\}}
EOF
PROVISIOND_CONF=$WORK/storm.yaml start_provisiond
awk -v n="$CLIENTS" 'BEGIN {
	print "version: 1"; print "machines:"
	for (i = 0; i < n; i++) {
		printf "  - name: storm-%04d\n    macs: [\"52:54:01:%02x:%02x:%02x\"]\n    profile: linux\n", i, int(i / 65536) % 256, int(i / 256) % 256, i % 256
		print "    params: {kernel: storm-vmlinuz, initrd: storm-initrd, cmdline: console=ttyS0}"
	}
}' >"$WORK/storm-machines.yaml"
srv "$PROVISIOND" --server https://127.0.0.1:8443 --token-file "$WORK/data/api-token" import "$WORK/storm-machines.yaml" --apply | tail -1 >&2

rss_reset "$PROVISIOND_PID"
set +e
cli "$WORK/storm" -server "$SRV_IP" -interface v-cli -clients "$CLIENTS" -mac-base 52:54:01:00:00:00 | tee "$WORK/storm.out" >&2
set -e
PROV_RSS=$(rss_peak "$PROVISIOND_PID")
srv curl -s --cacert "$WORK/data/tls.crt" "https://127.0.0.1:8443/metrics" >"$WORK/storm.metrics"
BOOTED=$(awk '/^provisiond_boots_done_total/ { s += $2 } END { print s + 0 }' "$WORK/storm.metrics")
# What the server saw of TFTP (ok, failed, repeat, busy, ...).
TFTP_SEEN=$(awk -F'[{}"]' '/^provisiond_tftp_transfers_total/ { printf "%s%s %d", sep, $3, $NF; sep = ", " }' "$WORK/storm.metrics")
stop_all

read -r _ n _ done _ failed _ wall <<<"$(grep -a '^clients' "$WORK/storm.out")"
read -r _ _ _ p50 _ p90 _ p99 _ max <<<"$(grep -a '^per machine' "$WORK/storm.out" || echo "- - - - - - - - - -")"
result "" "## Boot storm ($CLIENTS machines at once: DHCP, TFTP of undionly.kpxe, DHCP as iPXE, HTTP scripts, ${KERNEL_MIB} MiB kernel + ${INITRD_MIB} MiB initrd, callback)" "" \
	"| machines | completed | failed | wall | p50 | p90 | p99 | max | boots recorded done | provisiond peak RSS |" \
	"|---|---|---|---|---|---|---|---|---|---|" \
	"| $n | $done | $failed | $wall | $p50 | $p90 | $p99 | $max | $BOOTED | $((PROV_RSS / 1024)) MiB |"
result "" "provisiond's TFTP requests by result: $TFTP_SEEN"
grep -a '^failure' "$WORK/storm.out" | sed 's/^/    /' | tee -a "$OUT" || true
