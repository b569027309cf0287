package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
)

// Booter answers the protocol servers' questions from the inventory and the
// profiles: it implements pxe.Decider and pxe.Scripter.
type Booter struct {
	store    *inventory.Store
	profiles atomic.Pointer[profile.Set]
	mu       sync.Mutex
	offered  map[string]time.Time // MAC -> when it last fetched an iPXE binary
	bootCfg  config.Boot
	ipxeDir  string
	files    map[string]string // configured iPXE binaries found at start
	log      *slog.Logger
}

// NewBooter returns a Booter over store with the given profiles; files are
// the iPXE binaries found at start (IPXEFiles).
func NewBooter(store *inventory.Store, set *profile.Set, bootCfg config.Boot, ipxeDir string, files map[string]string, log *slog.Logger) *Booter {
	b := &Booter{store: store, bootCfg: bootCfg, ipxeDir: ipxeDir, files: files, log: log, offered: map[string]time.Time{}}
	b.profiles.Store(set)
	return b
}

// SetProfiles swaps in a new profile set (reload).
func (b *Booter) SetProfiles(set *profile.Set) { b.profiles.Store(set) }

// Profiles returns the current profile set.
func (b *Booter) Profiles() *profile.Set { return b.profiles.Load() }

func (b *Booter) options() boot.Options {
	return boot.Options{BIOS: b.bootCfg.BIOS, UEFIx86: b.bootCfg.UEFIx86, UEFIx64: b.bootCfg.UEFIx64, UEFIARM64: b.bootCfg.UEFIARM64,
		ChainIPXE: b.bootCfg.ChainIPXE}
}

// chainWindow is how long after delivering an iPXE binary to a MAC
// provisiond takes that MAC's iPXE requests to come from that binary.
const chainWindow = 2 * time.Minute

// chained reports whether mac was sent an iPXE binary within the window.
func (b *Booter) chained(mac string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.offered[mac]
	return ok && now.Sub(t) < chainWindow
}

// NoteDelivered records that mac fetched one of provisiond's iPXE binaries
// (over TFTP or HTTP): its next iPXE DHCP request comes from that binary
// and gets the script, not another chainload.
func (b *Booter) NoteDelivered(mac string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.offered) > 65536 {
		for k, t := range b.offered {
			if now.Sub(t) >= chainWindow {
				delete(b.offered, k)
			}
		}
	}
	b.offered[mac] = now
}

// IPXEFiles resolves the configured iPXE binaries that exist in the iPXE
// directory to their real paths (Debian links ipxe.efi to /boot/ipxe.efi).
func IPXEFiles(dir string, bc config.Boot) map[string]string {
	out := map[string]string{}
	for _, name := range []string{bc.BIOS, bc.UEFIx86, bc.UEFIx64, bc.UEFIARM64, "ipxe.efi", "snponly.efi", "undionly.kpxe", "undionly.kkpxe", "ipxe.pxe"} {
		if name == "" || filepath.Base(name) != name {
			continue
		}
		real, err := filepath.EvalSymlinks(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if st, err := os.Stat(real); err == nil && st.Mode().IsRegular() {
			out[name] = real
		}
	}
	return out
}

func (b *Booter) machine(mac string) *inventory.Machine {
	m, err := b.store.MachineByMAC(mac)
	if err != nil {
		if !errors.Is(err, inventory.ErrNotFound) {
			b.log.Error("inventory lookup failed", "mac", mac, "err", err)
		}
		return nil
	}
	return m
}

// DecideDHCP implements pxe.Decider.
func (b *Booter) DecideDHCP(_ context.Context, req boot.Request) boot.DHCPDecision {
	if !boot.IsPXEClass(req.Class) {
		return boot.DHCPDecision{Ignore: true, Silent: true, Reason: "not a PXE client"}
	}
	m := b.machine(req.MAC)
	now := time.Now()
	req.ChainedRecently = b.chained(req.MAC, now)
	d := boot.DecideDHCP(req, m, b.options())
	if !d.Ignore && d.Binary != "" {
		// A binary missing at start may have been installed since.
		if _, ok := b.files[d.Binary]; !ok {
			if _, err := os.Stat(filepath.Join(b.ipxeDir, d.Binary)); err != nil {
				return boot.DHCPDecision{Ignore: true, Firmware: d.Firmware, Reason: fmt.Sprintf("iPXE binary %s for %s clients is missing from %s", d.Binary, d.Firmware, b.ipxeDir)}
			}
		}
	}
	return d
}

// IsIPXEBinary reports whether file is one of the iPXE binaries provisiond
// hands out.
func (b *Booter) IsIPXEBinary(file string) bool {
	switch strings.TrimLeft(file, "/") {
	case b.bootCfg.BIOS, b.bootCfg.UEFIx86, b.bootCfg.UEFIx64, b.bootCfg.UEFIARM64:
		return true
	}
	return false
}

// FirstStage implements pxe.Scripter.
func (b *Booter) FirstStage(_ context.Context, mac, baseURL string) ([]byte, error) {
	return boot.FirstStage(mac, baseURL), nil
}

// Script implements pxe.Scripter: it renders the profile the machine owning
// mac boots now (the default profile for unknown MACs).
func (b *Booter) Script(_ context.Context, mac, baseURL string, _ map[string]string) ([]byte, string, error) {
	m := b.machine(mac)
	return b.Render(m, mac, baseURL)
}

// Render renders the profile machine m (nil: unknown) gets when booting
// from mac, reached at baseURL.
func (b *Booter) Render(m *inventory.Machine, mac, baseURL string) ([]byte, string, error) {
	name := boot.ProfileFor(m, b.bootCfg.DefaultProfile)
	p, ok := b.profiles.Load().Get(name)
	if !ok {
		return nil, name, fmt.Errorf("profile %s does not exist (provisiond profile list shows the profiles)", name)
	}
	body, err := p.Render(boot.ScriptData(m, mac, baseURL, name, b.bootCfg.DefaultParams))
	return body, name, err
}
