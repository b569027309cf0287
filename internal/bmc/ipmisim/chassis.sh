#!/bin/sh
# The chassis hook of ipmi_sim: the test machine's power and boot device.
# ipmi_sim calls it as HOOK DEVICE get|set PARM [VALUE]...; power 1/0 runs
# the machine's start/stop commands. The boot-flags module keeps the next
# boot device in $D/boot (and, unless the 60 s timeout was disabled, its
# expiry in $D/boot.expires); a power-on POSTs after the delay in
# $D/poweron-delay and uses the device once, if still valid.
D={{.Dir}}
log() { echo "$(date +%T) $*" >>$D/chassis.log; }
running() { [ -f $D/posting ] || { {{.Running}}; }; }
takeboot() {
	boot=$(cat $D/boot 2>/dev/null || echo default)
	if [ "$boot" != default ] && [ -f $D/boot.expires ] && [ "$(date +%s)" -gt "$(cat $D/boot.expires)" ]; then
		log "boot flags expired before POST (set more than 60 s earlier): boot default"
		boot=default
	fi
	echo default >$D/boot
	rm -f $D/boot.expires
}
post() {
	takeboot
	log "power on: boot $boot"
	{{.Start}}
}
start() {
	delay=$(cat $D/poweron-delay 2>/dev/null || echo 0)
	if [ "$delay" -gt 0 ]; then
		log "power on: POST in ${delay}s"
		( sleep "$delay"; post; rm -f $D/posting ) </dev/null >/dev/null 2>&1 &
		echo $! >$D/posting
		return
	fi
	post
}
stop() {
	if [ -f $D/posting ]; then
		kill "$(cat $D/posting)" 2>/dev/null
		rm -f $D/posting
		log "power off (before POST)"
		return
	fi
	if running; then
		{{.Stop}}
		log "power off"
	fi
}
shift
op=$1; shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power) if running; then echo power:1; else echo power:0; fi ;;
		boot) echo "boot:$(cat $D/boot 2>/dev/null || echo default)" ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		case $1 in
		power) if [ "$2" = 1 ]; then running || start; else stop; fi ;;
		reset) stop; start ;;
		identify|shutdown|boot) ;;
		*) echo "Invalid parameter: $1"; exit 1 ;;
		esac
		shift 2
	done ;;
*) echo "Unknown operation: $op"; exit 1 ;;
esac
