# Shared by the scripts under bench/: a two-host lab of network namespaces
# (a server and a client on one veth pair, 192.0.2.0/24), process handling
# and the result file. Source it; do not run it.
#
# Every server under test runs in turn in the server namespace on the same
# addresses and ports, and is given the same files; every client runs in the
# client namespace. Nothing leaves the namespaces.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
SRV_NS=${SRV_NS:-pdb-srv}
CLI_NS=${CLI_NS:-pdb-cli}
SRV_IP=192.0.2.1
CLI_IP=192.0.2.2
# The work directory holds the binaries, the served files and the logs;
# BENCH_WORK keeps it (and its 64/100 MiB files) between runs.
WORK=${BENCH_WORK:-/tmp/provisiond-bench}
# Results are appended here as Markdown; bench/run starts it.
OUT=${BENCH_OUT:-$WORK/results.md}
PIDS=()

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

need_root() {
	[[ $(id -u) == 0 ]] || die "needs root (network namespaces, ports 67 and 69): run it as root, as make bench does"
}

need() {
	local cmd
	for cmd in "$@"; do
		command -v "$cmd" >/dev/null || die "$cmd is missing: sudo make bench-deps installs what the benchmarks use"
	done
}

# PIN: a command prefix for everything srv and cli run (bench/tftp.sh's
# PIN_CPU sets it to taskset); empty by default.
PIN=()
srv() { ip netns exec "$SRV_NS" "${PIN[@]}" "$@"; }
cli() { ip netns exec "$CLI_NS" "${PIN[@]}" "$@"; }

# lab_up makes the two namespaces and the veth pair between them, and the
# directories every server serves: $WORK/tftp (the iPXE binaries, and the
# TFTP test files) and $WORK/assets.
lab_up() {
	mkdir -p "$WORK/tftp" "$WORK/assets"
	cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi "$WORK/tftp/"
	lab_down 2>/dev/null || true
	ip netns add "$SRV_NS"
	ip netns add "$CLI_NS"
	ip link add v-srv netns "$SRV_NS" type veth peer name v-cli netns "$CLI_NS"
	srv ip addr add "$SRV_IP/24" dev v-srv
	cli ip addr add "$CLI_IP/24" dev v-cli
	srv ip link set lo up
	cli ip link set lo up
	srv ip link set v-srv up
	cli ip link set v-cli up
	trap 'stop_all; lab_down' EXIT
}

lab_down() {
	ip netns del "$SRV_NS" 2>/dev/null || true
	ip netns del "$CLI_NS" 2>/dev/null || true
}

# start NAME CMD...: runs CMD in the background, logs into $WORK/NAME.log,
# and remembers its process id in $LAST_PID.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# stop PID: TERM to the job and the server it started (the job is a
# subshell running "ip netns exec", which becomes the server), then KILL
# after 5 s.
stop() {
	local pid=$1 i kids
	kids=$(pgrep -P "$pid" || true)
	kill $kids "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 $kids "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 $kids "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

stop_all() {
	local p
	for p in "${PIDS[@]}"; do stop "$p"; done
	PIDS=()
}

# server_pid PARENT: the pid of the server itself under "ip netns exec".
server_pid() {
	local pid=$1 child
	for _ in $(seq 50); do
		child=$(pgrep -P "$pid" | head -1 || true)
		[[ -n $child ]] && { echo "$child"; return; }
		sleep 0.1
	done
	echo "$pid"
}

# wait_port NS PROTO PORT: until something listens there (10 s).
wait_port() {
	local ns=$1 proto=$2 port=$3
	for _ in $(seq 100); do
		if ip netns exec "$ns" ss -Hln"${proto:0:1}" "sport = :$port" | grep -q .; then
			return 0
		fi
		sleep 0.1
	done
	die "nothing listens on $proto port $port in $ns after 10 s (see $WORK/*.log)"
}

# build_provisiond: bin/provisiond as make build makes it, or the binary
# PROVISIOND_BIN names (to measure another version side by side).
build_provisiond() {
	if [[ -n ${PROVISIOND_BIN:-} ]]; then
		PROVISIOND=$PROVISIOND_BIN
		return
	fi
	PROVISIOND=$WORK/provisiond
	(cd "$REPO" && go build -trimpath -ldflags "-s -w" -o "$PROVISIOND" ./cmd/provisiond)
}

# start_provisiond [serve flags...]: provisiond serve in the server namespace
# on its defaults (log level info, as shipped), serving $WORK/tftp (the iPXE
# binaries and the TFTP test files) and $WORK/assets.
start_provisiond() {
	build_provisiond
	rm -rf "$WORK/data"
	local conf=()
	[[ -n ${PROVISIOND_CONF:-} ]] && conf=(-c "$PROVISIOND_CONF")
	start provisiond srv "$PROVISIOND" serve "${conf[@]}" --interface v-srv --data-dir "$WORK/data" \
		--ipxe-dir "$WORK/tftp" --assets-dir "$WORK/assets" --http-listen :8080 "$@"
	PROVISIOND_PID=$(server_pid "$LAST_PID")
	wait_port "$SRV_NS" tcp 8080
}

# pxe_perf RATE PERIOD: perfdhcp sends PXE DISCOVERs (options 60, 93, 94, 97)
# from 1,000 client MACs in the client namespace at RATE per second for
# PERIOD seconds, as a relay; prints "offers/s drops% avg_ms max_ms sent
# received" and appends perfdhcp's report to $WORK/perfdhcp.log.
pxe_perf() {
	local rate=$1 period=$2 out opt60
	opt60=$(printf 'PXEClient:Arch:00000:UNDI:002001' | xxd -p -c 256)
	out=$(cli perfdhcp -4 -i -r "$rate" -p "$period" -R 1000 -l "$CLI_IP" \
		-o "60,$opt60" -o 93,0000 -o 94,010201 -o "97,00$(printf '%032x' 42)" "$SRV_IP" 2>&1 || true)
	echo "$out" >>"$WORK/perfdhcp.log"
	echo "$out" | awk -v period="$period" '
		/^sent packets:/ { sent = $3 }
		/^received packets:/ { recv = $3 }
		/^drops ratio:/ { ratio = $3 }
		/^avg delay:/ { avg = $3 }
		/^max delay:/ { max = $3 }
		END { printf "%.0f %s %s %s %s %s\n", recv / period, ratio, avg, max, sent, recv }'
}

# rss_reset PID / rss_peak PID: peak resident memory (VmHWM) since the reset, in KiB.
rss_reset() { echo 5 >"/proc/$1/clear_refs"; }
rss_peak() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# rss_keep PID: PROV_RSS becomes the larger of itself and PID's peak (KiB),
# for a server started once per round.
rss_keep() {
	local rss
	rss=$(rss_peak "$1")
	PROV_RSS=$((rss > ${PROV_RSS:-0} ? rss : ${PROV_RSS:-0}))
}

# take_turns SERVER...: ROUNDS rounds, each calling run_SERVER (or
# ${TURN}_SERVER) for every server, in the other order the next round
# (neither always runs first); ROUND holds the round's number.
take_turns() {
	local order=("$@") s
	for ROUND in $(seq "$ROUNDS"); do
		for s in "${order[@]}"; do "${TURN:-run}_$s"; done
		mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
	done
}

# field KEY N: the median of field N over the lines of RUNS[KEY] (the
# caller's associative array, a line per round).
field() { median $(awk -v n="$2" 'NF { print $n }' <<<"${RUNS[$1]}"); }

# cpu_ticks PID: the process's user and system time, in clock ticks of
# $TICK a second.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# steal_ticks: "STEAL TOTAL", the machine's CPU time taken by the
# hypervisor for other guests (steal) and all its CPU time, in ticks, from
# /proc/stat. On a shared virtual machine, steal is what makes one round
# slower than its neighbours; steal_share turns two readings into a share.
steal_ticks() { awk '/^cpu / { for (i = 2; i <= 9; i++) t += $i; print $9, t; exit }' /proc/stat; }

# steal_share "BEFORE" "AFTER": the steal between two steal_ticks readings,
# in per cent of all CPU time between them.
steal_share() {
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x); split(b, y); d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}

# A measurement during which the hypervisor gave other guests more than
# STEAL_MAX per cent of the CPU is taken again, STEAL_TRIES times in all at
# most: the machines provisiond is for are not shared, and a round slowed
# by a neighbour measures the neighbour. Either server's measurements
# alike; each try set aside is a line in $WORK/steal-retries, with what it
# measured.
STEAL_MAX=${STEAL_MAX:-10}
STEAL_TRIES=${STEAL_TRIES:-3}

# calm CMD...: runs CMD, a measurement printing one line, until the steal
# during it is at most STEAL_MAX or the tries are spent; prints the last
# try's line and the steal during it (per cent).
calm() {
	local try s0 out st
	for try in $(seq "$STEAL_TRIES"); do
		s0=$(steal_ticks)
		out=$("$@")
		st=$(steal_share "$s0" "$(steal_ticks)")
		((st <= STEAL_MAX)) && break
		if ((try < STEAL_TRIES)); then
			# What it measured stays on record (a failure among it too).
			echo "$* -> $out $st" >>"$WORK/steal-retries"
			log "steal $st % during the measurement ($try of $STEAL_TRIES tries; it gave $out): taking it again"
		fi
	done
	echo "$out $st"
}

# fill FILE MIB: a file of MIB mebibytes of random bytes, made once.
fill() {
	local f=$1 mib=$2
	if [[ ! -f $f || $(stat -c %s "$f") != $((mib * 1048576)) ]]; then
		head -c $((mib * 1048576)) /dev/urandom >"$f"
	fi
}

# result LINE...: appends Markdown to the result file and shows it.
result() {
	printf '%s\n' "$@" | tee -a "$OUT"
}

# ratio A B: A/B with two decimals (empty if B is zero).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'; }

# median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mkdir -p "$WORK"
