#!/usr/bin/env bash
# Builds the end-to-end tests' "operating system": a Debian kernel (the cloud
# flavour: small, EFI stub, virtio as modules) and a busybox initramfs whose
# init prints the kernel command line on the serial console, brings up the
# virtio NIC with DHCP and calls provisiond's booted callback.
#
# Usage: test/e2e/assets.sh [OUTDIR]   (default: test/e2e/.cache)
# Needs: apt-get (after apt-get update), dpkg-deb, cpio, gzip, busybox-static.
set -euo pipefail

out=${1:-$(cd "$(dirname "$0")" && pwd)/.cache}
# Bump when the test OS changes, so cached copies are rebuilt.
version=4
mkdir -p "$out"
# One build at a time (tests run in parallel share the cache).
exec 9>"$out/.lock"
flock 9
if [[ -s $out/vmlinuz && -s $out/initrd.img && $(cat "$out/version" 2>/dev/null) == "$version" ]]; then
	exit 0
fi
for tool in apt-get dpkg-deb cpio gzip; do
	command -v "$tool" >/dev/null || { echo "assets.sh: $tool is missing" >&2; exit 1; }
done
busybox=/bin/busybox
if ! dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
	echo "assets.sh: $busybox is not the static busybox: apt-get install busybox-static" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image/ {print $2; exit}')
if [[ -z $pkg ]]; then
	echo "assets.sh: cannot resolve linux-image-cloud-amd64: run apt-get update first" >&2
	exit 1
fi
(cd "$tmp" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
if deb=$(ls "$tmp"/*.deb 2>/dev/null); then
	dpkg-deb -x "$deb" "$tmp/x"
elif ls "$out"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
	# No mirror: the full linux-image-amd64 that make kernel-tree
	# unpacked has the same virtio modules.
	echo "assets.sh: $pkg could not be downloaded; using the kernel in $out/kernel" >&2
	ln -s "$out/kernel" "$tmp/x"
else
	echo "assets.sh: $pkg could not be downloaded" >&2
	exit 1
fi
cp "$tmp"/x/boot/vmlinuz-* "$tmp/vmlinuz"

root=$tmp/root
mkdir -p "$root"/{bin,proc,sys,dev,etc,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
# Load order matters: dependencies first.
mods="failover net_failover virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_net"
for m in $mods; do
	f=$(find "$tmp/x/lib/modules" -name "$m.ko" | head -n1)
	[[ -n $f ]] || { echo "assets.sh: module $m not found in $pkg" >&2; exit 1; }
	cp "$f" "$root/lib/modules/"
done
echo "$mods" >"$root/lib/modules/order"

cat >"$root/etc/udhcpc.sh" <<'SCRIPT'
#!/bin/busybox sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	;;
esac
exit 0
SCRIPT

cat >"$root/init" <<'SCRIPT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "PROVISIOND-TEST-CMDLINE: $(cat /proc/cmdline)"
# Files a provisiond overlay may have laid over this image.
for f in /etc/hostname /etc/default/slurmd /etc/provisiond/node.env; do
	[ -f "$f" ] && echo "PROVISIOND-TEST-FILE: $f: $(tr '\n' ' ' <"$f")"
done
[ -f /etc/munge/munge.key ] && echo "PROVISIOND-TEST-MUNGE: $(sha256sum /etc/munge/munge.key | cut -d' ' -f1) $(stat -c %a /etc/munge/munge.key)"
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" || echo "PROVISIOND-TEST-INSMOD-FAILED: $m"; done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
cb=$(sed -n 's/.*provisiond\.callback=\([^ ]*\).*/\1/p' /proc/cmdline)
tc=$(sed -n 's/.*talos\.config=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set lo up
ip link set eth0 up
if udhcpc -i eth0 -s /etc/udhcpc.sh -q -n -t 10 -T 2 >/dev/null 2>&1; then
	echo "PROVISIOND-TEST-ADDR: $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
	# As Talos does with talos.config=: fetch the machine's config.
	if [ -n "$tc" ]; then
		if wget -q -O /tmp/talos.config "$tc"; then
			sed 's/^/PROVISIOND-TEST-TALOSCONFIG: /' /tmp/talos.config
		else
			echo "PROVISIOND-TEST-TALOSCONFIG: failed"
		fi
	fi
	if [ -n "$cb" ] && wget -q -O /dev/null --post-data "status=up" "$cb"; then
		echo "PROVISIOND-TEST-CALLBACK: ok"
	else
		echo "PROVISIOND-TEST-CALLBACK: failed"
	fi
else
	echo "PROVISIOND-TEST-ADDR: none"
fi
echo "PROVISIOND-TEST-DONE"
sync
# e2e.stay=1: stay up (a test that power-cycles a running machine).
case " $(cat /proc/cmdline) " in *" e2e.stay=1 "*) while :; do sleep 3600; done ;; esac
poweroff -f
SCRIPT
chmod +x "$root/init" "$root/etc/udhcpc.sh"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initrd.img"
mv "$tmp/vmlinuz" "$out/vmlinuz"
mv "$tmp/initrd.img" "$out/initrd.img"
echo "$version" >"$out/version"
echo "assets.sh: built $out/vmlinuz ($pkg) and $out/initrd.img"
