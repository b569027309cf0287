#!/usr/bin/env bash
# HTTP assets: 16 parallel downloads of a 100 MiB initrd from provisiond's
# /assets/ and from nginx serving the same directory (sendfile on, as Debian
# ships it), with curl in the client namespace. provisiond's peak RSS is
# read from VmHWM, reset just before the rounds.
#
# A round moves 1.6 GB in about half a second here: sixteen curl starts in a
# namespace and a burst of someone else's work were a good part of it. So
# both servers run side by side (ports 8080 and 8081) and take turns for
# ROUNDS rounds in alternating order, each client fetches the file REPEAT
# times in one curl, and the table gives the median round (with the best).
#
#   sudo bench/http.sh
#   CLIENTS=4 SIZE_MIB=50 ROUNDS=3 sudo bench/http.sh
source "$(dirname "$0")/lib.sh"
need_root
need curl nginx

CLIENTS=${CLIENTS:-16}
SIZE_MIB=${SIZE_MIB:-100}
ROUNDS=${ROUNDS:-5}
REPEAT=${REPEAT:-3}

lab_up
fill "$WORK/assets/initrd.img" "$SIZE_MIB"
chmod -R a+rX "$WORK/assets"

# round URL: CLIENTS clients at once, each downloading URL REPEAT times in
# one curl; prints "MiB/s wall_seconds failures".
round() {
	local url=$1 i j start end args=()
	for j in $(seq "$REPEAT"); do args+=(-o /dev/null "$url"); done
	rm -f "$WORK"/http-client.*
	start=$(date +%s.%N)
	for i in $(seq "$CLIENTS"); do
		cli curl -sS --fail --max-time 300 -w '%{size_download}\n' "${args[@]}" >"$WORK/http-client.$i" 2>>"$WORK/http-errors.log" &
	done
	wait || true
	end=$(date +%s.%N)
	local total=0 fails=0 b
	for i in $(seq "$CLIENTS"); do
		while read -r b; do
			if [[ $b == $((SIZE_MIB * 1048576)) ]]; then total=$((total + b)); else fails=$((fails + 1)); fi
		done < <(cat "$WORK/http-client.$i" 2>/dev/null || true)
		# A curl that failed before printing anything: all its downloads.
		[[ -s $WORK/http-client.$i ]] || fails=$((fails + REPEAT))
	done
	awk -v a="$start" -v b="$end" -v n="$total" -v f="$fails" 'BEGIN { printf "%.0f %.3f %d\n", n / 1048576 / (b - a), b - a, f }'
}

start_provisiond
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
	sendfile on;
	tcp_nopush on;
	access_log $WORK/nginx-access.log;
	server {
		listen $SRV_IP:8081;
		root $WORK;
		location /assets/ { }
	}
}
EOF
start nginx srv nginx -c "$WORK/nginx.conf" -g 'daemon off;'
wait_port "$SRV_NS" tcp 8081

declare -A URL=([provisiond]="http://$SRV_IP:8080/assets/initrd.img" [nginx]="http://$SRV_IP:8081/assets/initrd.img")
for s in provisiond nginx; do cli curl -sf -o /dev/null "${URL[$s]}"; done # warm the page cache, and each server
rss_reset "$PROVISIOND_PID"
PROV_RSS_START=$(awk '/^VmRSS:/ {print $2}' "/proc/$PROVISIOND_PID/status")
declare -A RUNS
order=(provisiond nginx)
for r in $(seq "$ROUNDS"); do
	for s in "${order[@]}"; do
		out=$(calm round "${URL[$s]}")
		RUNS[$s]+="$out"$'\n'
		log "http $s round $r: $out (MiB/s, s, failed, steal %)"
	done
	order=("${order[1]}" "${order[0]}")
done
PROV_RSS=$(rss_peak "$PROVISIOND_PID")
stop_all

# mibs NAME: the median round's MiB/s; best NAME: the best; fails NAME: all failures.
mibs() { median $(awk 'NF { print $1 }' <<<"${RUNS[$1]}"); }
best() { awk 'NF && $1 > m { m = $1 } END { print m + 0 }' <<<"${RUNS[$1]}"; }
fails() { awk 'NF { s += $3 } END { print s + 0 }' <<<"${RUNS[$1]}"; }
P=$(mibs provisiond) N=$(mibs nginx)
result "" "## HTTP assets ($CLIENTS parallel curl clients, each downloading a $SIZE_MIB MiB initrd $REPEAT times; median of $ROUNDS rounds taken in turns)" "" \
	"| server | aggregate MiB/s (median) | best round | vs nginx | failures | steal | peak RSS |" \
	"|---|---|---|---|---|---|---|" \
	"| provisiond | $P | $(best provisiond) | $(ratio "$P" "$N") | $(fails provisiond) | $(field provisiond 4) % | $((PROV_RSS / 1024)) MiB (from $((PROV_RSS_START / 1024)) MiB idle) |" \
	"| nginx | $N | $(best nginx) | 1.00 | $(fails nginx) | $(field nginx 4) % | |"
