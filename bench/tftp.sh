#!/usr/bin/env bash
# TFTP: the iPXE binaries (undionly.kpxe, ipxe.efi) and a 64 MiB file, at
# blksize 512 and 1468, one client and 16 at once, from provisiond, dnsmasq's
# TFTP server and tftpd-hpa, each serving the same directory. The client is
# curl's TFTP.
#
# The binaries take tens of milliseconds, and this machine is shared: a
# curl's own start (a process in a namespace, tens of milliseconds that vary
# more than the transfer does) and a burst of someone else's work decided
# rows. So each client fetches the binaries REPEAT times in one curl (the
# figure is its time per fetch of both), the servers take turns for ROUNDS
# rounds in alternating order, and the table gives each figure's median
# over the rounds, with the server's CPU time per fetch (user and system;
# not for tftpd-hpa, whose process per transfer is reaped by nobody, so its
# time is counted nowhere). The big file is fetched once per server, in
# the first round.
#
# PIN_CPU=N runs every server and client on CPU N alone. A lock-step
# transfer then costs what the two processes spend per block, one after
# the other, and not where the kernel happens to wake each of them (a wake-up
# on the other CPU of this virtual machine costs more than a block).
#
#   sudo bench/tftp.sh
#   CLIENTS="1 16" BLKSIZES="1468" ROUNDS=3 sudo bench/tftp.sh
#   PIN_CPU=0 CLIENTS=1 BLKSIZES=1468 sudo bench/tftp.sh
source "$(dirname "$0")/lib.sh"
need_root
need curl dnsmasq in.tftpd

if [[ -n ${PIN_CPU:-} ]]; then
	need taskset
	[[ $PIN_CPU =~ ^[0-9]+$ && $PIN_CPU -lt $(nproc) ]] || die "PIN_CPU=$PIN_CPU: give one CPU number below $(nproc)"
	PIN=(taskset -c "$PIN_CPU")
fi

BLKSIZES=${BLKSIZES:-512 1468}
CLIENTS=${CLIENTS:-1 16}
BIG_MIB=${BIG_MIB:-64}
ROUNDS=${ROUNDS:-5}
REPEAT=${REPEAT:-10}

lab_up
fill "$WORK/tftp/big.bin" "$BIG_MIB"
chmod -R a+rX "$WORK/tftp"

# fetch PID N BLKSIZE TIMES FILE...: N clients at once, each fetching the
# files in turn TIMES over in one curl; prints "wall_seconds
# median_seconds_per_client bytes failures server_cpu_ms", the times, bytes
# and CPU divided by TIMES. It waits for every job of its shell: call it in
# a subshell, never beside a server started in the background.
fetch() {
	local pid=$1 n=$2 blk=$3 times=$4
	shift 4
	local files=("$@") i j start end c0 c1
	rm -f "$WORK"/tftp-client.*
	c0=$(cpu_ticks "$pid")
	start=$(date +%s.%N)
	for i in $(seq "$n"); do
		(
			t0=$(date +%s.%N)
			bytes=0
			args=()
			for j in $(seq "$times"); do
				for f in "${files[@]}"; do
					args+=(-o /dev/null "tftp://$SRV_IP/$f")
				done
			done
			if out=$(cli curl -sS --fail --max-time 300 --tftp-blksize "$blk" -w '%{size_download}\n' "${args[@]}" 2>>"$WORK/tftp-errors.log"); then
				bytes=$(awk '{ s += $1 } END { print s + 0 }' <<<"$out")
			else
				echo fail >>"$WORK/tftp-client.$i"
			fi
			t1=$(date +%s.%N)
			echo "$(awk -v a="$t0" -v b="$t1" -v k="$times" 'BEGIN { printf "%.4f", (b - a) / k }') $((bytes / times))" >>"$WORK/tftp-client.$i"
		) &
	done
	wait
	end=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	local per=() total=0 fails=0 t b
	for i in $(seq "$n"); do
		fails=$((fails + $(grep -c fail "$WORK/tftp-client.$i" || true)))
		read -r t b < <(grep -v fail "$WORK/tftp-client.$i")
		per+=("$t")
		total=$((total + b))
	done
	echo "$(awk -v a="$start" -v b="$end" -v k="$times" 'BEGIN { printf "%.4f", (b - a) / k }') $(median "${per[@]}") $total $fails" \
		"$(awk -v c=$((c1 - c0)) -v hz="$TICK" -v k="$times" 'BEGIN { printf "%.1f", c / hz / k * 1000 }')"
}

# RUNS[server,what,blksize,clients]: a line per round, fetch's fields and
# the hypervisor's steal during it.
declare -A RUNS

# run_server NAME PID: one round against the server running as PID.
run_server() {
	local name=$1 pid=$2 blk n out
	# An untimed fetch first: the client's neighbour entry and the page
	# cache are warm for every server alike.
	(fetch "$pid" 1 1468 1 undionly.kpxe) >/dev/null
	for blk in $BLKSIZES; do
		for n in $CLIENTS; do
			out=$(calm fetch "$pid" "$n" "$blk" "$REPEAT" undionly.kpxe ipxe.efi)
			RUNS[$name,ipxe,$blk,$n]+="$out"$'\n'
			log "tftp $name round $ROUND, blksize $blk, $n client(s): binaries $out"
			if [[ $ROUND == 1 ]]; then
				# Once, however stolen: it takes seconds to a minute.
				out=$(STEAL_TRIES=1 calm fetch "$pid" "$n" "$blk" 1 big.bin)
				RUNS[$name,big,$blk,$n]+="$out"$'\n'
				log "tftp $name blksize $blk, $n client(s): ${BIG_MIB} MiB $out"
			fi
		done
	done
}

run_provisiond() {
	start_provisiond --no-dhcp
	wait_port "$SRV_NS" udp 69
	rss_reset "$PROVISIOND_PID"
	run_server provisiond "$PROVISIOND_PID"
	rss_keep "$PROVISIOND_PID"
	stop_all
}

run_dnsmasq() {
	start dnsmasq srv dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=v-srv --bind-interfaces \
		--enable-tftp=v-srv --tftp-root="$WORK/tftp" --tftp-max=64 --pid-file= --log-facility="$WORK/dnsmasq-tftp.log"
	wait_port "$SRV_NS" udp 69
	run_server dnsmasq "$(server_pid "$LAST_PID")"
	stop_all
}

run_tftpd-hpa() {
	start tftpd-hpa srv in.tftpd --foreground --listen --address "$SRV_IP:69" --secure "$WORK/tftp"
	wait_port "$SRV_NS" udp 69
	run_server tftpd-hpa "$(server_pid "$LAST_PID")"
	stop_all
}

SERVERS=(provisiond dnsmasq tftpd-hpa)
take_turns "${SERVERS[@]}"

# sum KEY N: field N added over the rounds.
sum() { awk -v n="$2" 'NF { s += $n } END { print s + 0 }' <<<"${RUNS[$1]}"; }
# mibs KEY: aggregate MiB/s, the median over the rounds.
mibs() { median $(awk 'NF { printf "%.1f\n", $3 / 1048576 / $1 }' <<<"${RUNS[$1]}"); }

result "" "## TFTP (curl's TFTP client; iPXE binaries = undionly.kpxe + ipxe.efi, $(($(stat -c %s "$WORK/tftp/undionly.kpxe") + $(stat -c %s "$WORK/tftp/ipxe.efi"))) bytes, fetched $REPEAT times per curl, medians of $ROUNDS rounds taken in turns; big = ${BIG_MIB} MiB, once${PIN_CPU:+; every server and client on CPU $PIN_CPU})" "" \
	"| file | blksize | clients | server | s per client (median) | aggregate MiB/s | vs dnsmasq | server CPU ms per fetch | failures | steal |" \
	"|---|---|---|---|---|---|---|---|---|---|"
for what in ipxe big; do
	for blk in $BLKSIZES; do
		for n in $CLIENTS; do
			dmibs=$(mibs "dnsmasq,$what,$blk,$n")
			for s in "${SERVERS[@]}"; do
				k="$s,$what,$blk,$n"
				label=binaries
				[[ $what == big ]] && label="${BIG_MIB} MiB"
				cpu=$(field "$k" 5)
				[[ $s == tftpd-hpa ]] && cpu="–"
				result "| $label | $blk | $n | $s | $(field "$k" 2) | $(mibs "$k") | $(ratio "$(mibs "$k")" "$dmibs") | $cpu | $(sum "$k" 4) | $(field "$k" 6) % |"
			done
		done
	done
done
result "" "provisiond peak RSS during the TFTP runs: $((PROV_RSS / 1024)) MiB"
