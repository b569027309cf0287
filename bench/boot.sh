#!/usr/bin/env bash
# Whole boots: a QEMU machine (TCG) from power-on to the test kernel
# running, SeaBIOS, OVMF and OVMF's UEFI HTTP boot, with provisiond (kernel over HTTP) and with
# dnsmasq as the usual all-in-one PXE server (kernel over TFTP), with a
# router that sends IPv6 router advertisements and one that does not. It runs
# BenchmarkWholeBoot in test/e2e, in the end-to-end tests' lab (router,
# server and QEMU in network namespaces); BOOTS boots per case.
#
#   sudo bench/boot.sh
#   BOOTS=3 sudo bench/boot.sh
source "$(dirname "$0")/lib.sh"
need_root
need qemu-system-x86_64 dnsmasq

BOOTS=${BOOTS:-1}
(cd "$REPO" && go test -count=1 -run '^$' -bench WholeBoot -benchtime "${BOOTS}x" -timeout 40m ./test/e2e) | tee "$WORK/boot.out" >&2

secs() { awk -v k="BenchmarkWholeBoot/$1-" '$1 ~ ("^" k "[0-9]+$") { for (i = 1; i <= NF; i++) if ($(i + 1) == "s/boot") print $i }' "$WORK/boot.out"; }
result "" "## Whole boots (QEMU TCG, power-on to the test kernel printing its command line; $BOOTS boot(s) per case)" "" \
	"| router | firmware | provisiond, defaults (chain_ipxe: auto, uefi_x64: snponly.efi) | provisiond, chain_ipxe: always (bios) / uefi_x64: ipxe.efi (uefi) | dnsmasq (all over TFTP, ipxe.efi) | provisiond defaults / dnsmasq |" \
	"|---|---|---|---|---|---|"
for fw in bios uefi; do
	p=$(secs "provisiond/$fw")
	c=$(secs "provisiond-chained/$fw")
	[[ -z $c ]] && c=$(secs "provisiond-ipxe-efi/$fw")
	d=$(secs "dnsmasq/$fw")
	result "| IPv6 RAs | $fw | ${p:-?} s | ${c:-?} s | ${d:-?} s | $(ratio "${p:-0}" "${d:-0}") |"
done
p=$(secs "provisiond/uefi-http")
result "| IPv6 RAs | uefi, HTTP boot | ${p:-?} s | – | – (dnsmasq serves no HTTP) | – |"
for fw in bios uefi; do
	p=$(secs "provisiond-nora/$fw")
	d=$(secs "dnsmasq-nora/$fw")
	result "| no RAs | $fw | ${p:-?} s | – | ${d:-?} s | $(ratio "${p:-0}" "${d:-0}") |"
done
p=$(secs "provisiond-nora/uefi-http")
result "| no RAs | uefi, HTTP boot | ${p:-?} s | – | – | – |"
