#!/usr/bin/env bash
# HTTP assets: 16 parallel downloads of a 100 MiB initrd from provisiond's
# /assets/ and from nginx serving the same directory (sendfile on, as Debian
# ships it), with curl in the client namespace. Each server gets ROUNDS
# rounds; the best round counts. provisiond's peak RSS is read from VmHWM,
# reset just before its rounds.
#
#   sudo bench/http.sh
#   CLIENTS=4 SIZE_MIB=50 sudo bench/http.sh
source "$(dirname "$0")/lib.sh"
need_root
need curl nginx

CLIENTS=${CLIENTS:-16}
SIZE_MIB=${SIZE_MIB:-100}
ROUNDS=${ROUNDS:-3}

lab_up
fill "$WORK/assets/initrd.img" "$SIZE_MIB"
chmod -R a+rX "$WORK/assets"

# round URL: CLIENTS downloads at once; prints "wall_seconds bytes failures".
round() {
	local url=$1 i start end
	rm -f "$WORK"/http-client.*
	start=$(date +%s.%N)
	for i in $(seq "$CLIENTS"); do
		cli curl -sS --fail --max-time 300 -o /dev/null -w '%{size_download}\n' "$url" >"$WORK/http-client.$i" 2>>"$WORK/http-errors.log" &
	done
	wait || true
	end=$(date +%s.%N)
	local total=0 fails=0 b
	for i in $(seq "$CLIENTS"); do
		b=$(cat "$WORK/http-client.$i" 2>/dev/null || true)
		if [[ $b == $((SIZE_MIB * 1048576)) ]]; then total=$((total + b)); else fails=$((fails + 1)); fi
	done
	echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $total $fails"
}

# best NAME URL: ROUNDS rounds; prints the fastest as "MiB/s wall failures".
best() {
	local name=$1 url=$2 r wall bytes fails bestw="" bestb=0 allfails=0
	for r in $(seq "$ROUNDS"); do
		read -r wall bytes fails <<<"$(round "$url")"
		log "http $name round $r: ${wall}s, $bytes bytes, $fails failed"
		allfails=$((allfails + fails))
		if [[ -z $bestw ]] || awk -v a="$wall" -v b="$bestw" 'BEGIN { exit !(a < b) }'; then bestw=$wall bestb=$bytes; fi
	done
	echo "$(awk -v b="$bestb" -v t="$bestw" 'BEGIN { printf "%.0f", b / 1048576 / t }') $bestw $allfails"
}

start_provisiond
cli curl -sf -o /dev/null "http://$SRV_IP:8080/assets/initrd.img" # warm the page cache
rss_reset "$PROVISIOND_PID"
PROV_RSS_START=$(awk '/^VmRSS:/ {print $2}' "/proc/$PROVISIOND_PID/status")
read -r P_MIBS P_WALL P_FAILS <<<"$(best provisiond "http://$SRV_IP:8080/assets/initrd.img")"
PROV_RSS=$(rss_peak "$PROVISIOND_PID")
stop_all

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
read -r N_MIBS N_WALL N_FAILS <<<"$(best nginx "http://$SRV_IP:8081/assets/initrd.img")"
stop_all

result "" "## HTTP assets ($CLIENTS parallel curl downloads of a $SIZE_MIB MiB initrd, best of $ROUNDS rounds)" "" \
	"| server | aggregate MiB/s | wall s | vs nginx | failures | peak RSS |" \
	"|---|---|---|---|---|---|" \
	"| provisiond | $P_MIBS | $P_WALL | $(ratio "$P_MIBS" "$N_MIBS") | $P_FAILS | $((PROV_RSS / 1024)) MiB (from $((PROV_RSS_START / 1024)) MiB idle) |" \
	"| nginx | $N_MIBS | $N_WALL | 1.00 | $N_FAILS | |"
