#!/usr/bin/env bash
# TFTP: the iPXE binaries (undionly.kpxe, ipxe.efi) and a 64 MiB file, at
# blksize 512 and 1468, one client and 16 at once, from provisiond, dnsmasq's
# TFTP server and tftpd-hpa, each serving the same directory. The client is
# curl's TFTP (one process per client for all its files; the binaries are
# timed as the median of ROUNDS runs after an untimed warm-up fetch).
#
#   sudo bench/tftp.sh
#   CLIENTS="1 16" BLKSIZES="1468" sudo bench/tftp.sh
source "$(dirname "$0")/lib.sh"
need_root
need curl dnsmasq in.tftpd

BLKSIZES=${BLKSIZES:-512 1468}
CLIENTS=${CLIENTS:-1 16}
BIG_MIB=${BIG_MIB:-64}
ROUNDS=${ROUNDS:-5}

lab_up
fill "$WORK/tftp/big.bin" "$BIG_MIB"
chmod -R a+rX "$WORK/tftp"

# fetch N BLKSIZE FILE...: N clients at once, each fetching the files in
# turn; prints "wall_seconds median_seconds_per_client bytes failures".
fetch() {
	local n=$1 blk=$2
	shift 2
	local files=("$@") i start end
	rm -f "$WORK"/tftp-client.*
	start=$(date +%s.%N)
	for i in $(seq "$n"); do
		(
			t0=$(date +%s.%N)
			bytes=0
			# One curl for all the files, one after the other: the
			# client's start-up is paid once, as a machine's would be.
			args=()
			for f in "${files[@]}"; do
				args+=(-o /dev/null "tftp://$SRV_IP/$f")
			done
			if out=$(cli curl -sS --fail --max-time 300 --tftp-blksize "$blk" -w '%{size_download}\n' "${args[@]}" 2>>"$WORK/tftp-errors.log"); then
				bytes=$(awk '{ s += $1 } END { print s + 0 }' <<<"$out")
			else
				echo fail >>"$WORK/tftp-client.$i"
			fi
			t1=$(date +%s.%N)
			echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $bytes" >>"$WORK/tftp-client.$i"
		) &
	done
	wait
	end=$(date +%s.%N)
	local times=() total=0 fails=0
	for i in $(seq "$n"); do
		fails=$((fails + $(grep -c fail "$WORK/tftp-client.$i" || true)))
		read -r t b < <(grep -v fail "$WORK/tftp-client.$i")
		times+=("$t")
		total=$((total + b))
	done
	echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $(median "${times[@]}") $total $fails"
}

declare -A R
# median_of N ARGS: fetch ARGS N times, print the run with the median wall
# time (the binaries take tens of milliseconds: one run is noise).
median_of() {
	local rounds=$1 runs=() r
	shift
	for r in $(seq "$rounds"); do
		runs+=("$(fetch "$@")")
	done
	printf '%s\n' "${runs[@]}" | sort -g | sed -n "$(((rounds + 1) / 2))p"
}

run_server() {
	local name=$1 blk n
	# An untimed fetch first: the client's neighbour entry and the page
	# cache are warm for every server alike.
	(fetch 1 1468 undionly.kpxe) >/dev/null
	for blk in $BLKSIZES; do
		for n in $CLIENTS; do
			R[$name,ipxe,$blk,$n]=$(median_of "$ROUNDS" "$n" "$blk" undionly.kpxe ipxe.efi)
			R[$name,big,$blk,$n]=$(fetch "$n" "$blk" big.bin)
			log "tftp $name blksize $blk, $n client(s): binaries ${R[$name,ipxe,$blk,$n]}; ${BIG_MIB} MiB ${R[$name,big,$blk,$n]}"
		done
	done
}

SERVERS=(provisiond dnsmasq tftpd-hpa)
start_provisiond --no-dhcp
wait_port "$SRV_NS" udp 69
run_server provisiond
PROV_RSS=$(rss_peak "$PROVISIOND_PID")
stop_all

start dnsmasq srv dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=v-srv --bind-interfaces \
	--enable-tftp=v-srv --tftp-root="$WORK/tftp" --tftp-max=64 --pid-file= --log-facility="$WORK/dnsmasq-tftp.log"
wait_port "$SRV_NS" udp 69
run_server dnsmasq
stop_all

start tftpd-hpa srv in.tftpd --foreground --listen --address "$SRV_IP:69" --secure "$WORK/tftp"
wait_port "$SRV_NS" udp 69
run_server tftpd-hpa
stop_all

result "" "## TFTP (curl's TFTP client; iPXE binaries = undionly.kpxe + ipxe.efi, $(($(stat -c %s "$WORK/tftp/undionly.kpxe") + $(stat -c %s "$WORK/tftp/ipxe.efi"))) bytes; big = ${BIG_MIB} MiB)" "" \
	"| file | blksize | clients | server | s per client (median) | aggregate MiB/s | vs dnsmasq | failures |" \
	"|---|---|---|---|---|---|---|---|"
for what in ipxe big; do
	for blk in $BLKSIZES; do
		for n in $CLIENTS; do
			read -r dwall _ dbytes _ <<<"${R[dnsmasq,$what,$blk,$n]}"
			dmibs=$(awk -v b="$dbytes" -v t="$dwall" 'BEGIN { printf "%.1f", b / 1048576 / t }')
			for s in "${SERVERS[@]}"; do
				read -r wall med bytes fails <<<"${R[$s,$what,$blk,$n]}"
				mibs=$(awk -v b="$bytes" -v t="$wall" 'BEGIN { printf "%.1f", b / 1048576 / t }')
				label=binaries
				[[ $what == big ]] && label="${BIG_MIB} MiB"
				result "| $label | $blk | $n | $s | $med | $mibs | $(ratio "$mibs" "$dmibs") | $fails |"
			done
		done
	done
done
result "" "provisiond peak RSS during the TFTP runs: $((PROV_RSS / 1024)) MiB"
