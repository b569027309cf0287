#!/usr/bin/env bash
# Builds the base image of provisiond's slurm profile: a Debian root file
# system with slurmd, munge, systemd and DHCP networking, packed as a
# compressed cpio that the kernel unpacks into RAM. Nothing is installed on
# the node: it boots, joins the cluster, and is gone at power-off.
#
# provisiond adds each node's overlay at boot (hostname, /etc/munge/munge.key,
# /etc/default/slurmd with --conf-server, /etc/provisiond/node.env).
#
# Usage: sudo profiles/slurm/build-base.sh [OUTDIR]
#   OUTDIR   default /var/lib/provisiond/assets/slurm; gets vmlinuz and base.cpio.gz
# Environment: SUITE (default bookworm), MIRROR (default http://deb.debian.org/debian),
#   EXTRA_PACKAGES (space-separated, added to the image).
# Needs: debootstrap, cpio, gzip (apt-get install debootstrap cpio gzip), root.
set -euo pipefail

out=${1:-/var/lib/provisiond/assets/slurm}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
[[ $(id -u) == 0 ]] || { echo "build-base.sh: run it as root (debootstrap needs it)" >&2; exit 1; }
for t in debootstrap cpio gzip; do
	command -v "$t" >/dev/null || { echo "build-base.sh: $t is missing: apt-get install debootstrap cpio gzip" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'umount -R "$work/root/proc" "$work/root/sys" "$work/root/dev" 2>/dev/null || true; rm -rf "$work"' EXIT
root=$work/root
# firmware-bnx2: the BL460c Gen8 and x3550 M3 NICs (BCM5709) get no link without it.
# dbus: slurmd's cgroup/v2 plugin creates its stepd scope over the system bus.
pkgs=systemd-sysv,dbus,udev,kmod,iproute2,ca-certificates,curl,munge,slurmd,linux-image-amd64,firmware-bnx2,procps,less
[[ -n ${EXTRA_PACKAGES:-} ]] && pkgs+=,${EXTRA_PACKAGES// /,}
echo "build-base.sh: debootstrap $suite ($pkgs)"
debootstrap --variant=minbase --components=main,non-free-firmware --include="$pkgs" "$suite" "$root" "$mirror"

# DHCP on every wired NIC, with systemd-networkd, identified to the router
# by the NIC's MAC (as its reservations are): every node boots the same
# image, and a client ID from the machine ID got them all one address.
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/20-wired.network" <<'NET'
[Match]
Type=ether

[Network]
DHCP=yes

[DHCPv4]
ClientIdentifier=mac
NET
chroot "$root" systemctl enable systemd-networkd.service

# The overlay's munge key arrives owned by root: give it to munge first.
cat >"$root/etc/systemd/system/provisiond-overlay.service" <<'UNIT'
[Unit]
Description=Adopt the provisiond overlay (munge key ownership)
Before=munge.service slurmd.service
DefaultDependencies=no
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'chown munge:munge /etc/munge /etc/munge/munge.key && chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key'

[Install]
WantedBy=multi-user.target
UNIT
# Tell provisiond the node is up once slurmd runs.
cat >"$root/etc/systemd/system/provisiond-booted.service" <<'UNIT'
[Unit]
Description=Report to provisiond that this node booted
After=network-online.target slurmd.service
Wants=network-online.target

[Service]
Type=oneshot
EnvironmentFile=/etc/provisiond/node.env
ExecStartPre=/bin/sleep 5
ExecStart=/bin/sh -c 'if systemctl is-active -q slurmd; then s=slurmd-started; else s=slurmd-failed; fi; exec /usr/bin/curl -fsS -X POST --retry 10 --retry-connrefused -d status=$s "$PROVISIOND_CALLBACK"'

[Install]
WantedBy=multi-user.target
UNIT
# Config-less slurmd keeps the fetched configuration in its default spool
# directory, which Debian's package does not create.
mkdir -p "$root/var/spool/slurmd"
mkdir -p "$root/etc/systemd/system/slurmd.service.d"
cat >"$root/etc/systemd/system/slurmd.service.d/provisiond.conf" <<'UNIT'
[Unit]
# Config-less: slurmd fetches slurm.conf from --conf-server; no local file needed.
ConditionPathExists=
After=network-online.target munge.service
Wants=network-online.target
UNIT
chroot "$root" systemctl enable provisiond-overlay.service provisiond-booted.service munge.service slurmd.service systemd-networkd-wait-online.service

# The image is served to anyone on the LAN: it must hold no secrets. The
# munge package made a key at install; the node's real key comes in its
# overlay. SSH host keys (if openssh-server was added) are made per boot.
rm -f "$root/etc/munge/munge.key" "$root"/etc/ssh/ssh_host_*
# debootstrap copied the build host's resolver: the node has none of its
# own (names come from the overlay's /etc/hosts).
rm -f "$root/etc/resolv.conf"
: >"$root/etc/resolv.conf"
if [[ -x $root/usr/bin/ssh-keygen ]]; then
	sed -i "s|^ExecStart=.*|& ; /usr/bin/ssh-keygen -A|" "$root/etc/systemd/system/provisiond-overlay.service"
fi
# Drivers a compute node never loads (sound, graphics, media, wireless).
for d in sound drivers/gpu drivers/media drivers/net/wireless drivers/bluetooth net/bluetooth net/wireless; do
	rm -rf "$root"/lib/modules/*/kernel/$d
done
chroot "$root" sh -c 'for k in /lib/modules/*; do depmod -a "${k##*/}"; done'

# A root password is not set: log in on the console is refused. Add your
# SSH keys with EXTRA_PACKAGES=openssh-server and an overlay file.
echo "slurm-node" >"$root/etc/hostname"
# Each boot makes its own machine ID: /etc/machine-id empty, and dbus's
# copy (a fixed ID debootstrap wrote) only a link to it, or systemd takes
# that one and every node has the same.
: >"$root/etc/machine-id"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"

# /init: copy the unpacked root into a tmpfs (the kernel's rootfs cannot be
# pivoted) and switch to systemd there.
cat >"$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mkdir -p /newroot
mount -t tmpfs -o size=90% tmpfs /newroot
for d in bin boot etc home lib lib64 opt root sbin srv usr var; do
	[ -e "/$d" ] && cp -a "/$d" /newroot/
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/run /newroot/tmp
umount /proc
exec switch_root /newroot /sbin/init
INIT
chmod +x "$root/init"

mkdir -p "$out"
cp "$root"/boot/vmlinuz-* "$out/vmlinuz.tmp"
rm -rf "$root"/boot/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
echo "build-base.sh: packing $(du -sh "$root" | cut -f1) into $out/base.cpio.gz"
(cd "$root" && find . -xdev | cpio -o -H newc --quiet | gzip -6) >"$out/base.cpio.gz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/base.cpio.gz.tmp" "$out/base.cpio.gz"
echo "build-base.sh: wrote $out/vmlinuz and $out/base.cpio.gz"
