package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

func open(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "provisiond.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestOpenModeAndLock(t *testing.T) {
	s, path := open(t, Options{})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
	_ = s
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open: %v", err)
	}
}

func TestNormalizeMAC(t *testing.T) {
	for _, in := range []string{"52:54:00:AB:cd:EF", "52-54-00-ab-cd-ef", "525400abcdef", "5254.00ab.cdef"} {
		if got, err := NormalizeMAC(in); err != nil || got != "52:54:00:ab:cd:ef" {
			t.Errorf("NormalizeMAC(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "52:54:00", "zz:54:00:ab:cd:ef", "52:54:00:ab:cd:ef:01:02"} {
		if _, err := NormalizeMAC(bad); err == nil {
			t.Errorf("NormalizeMAC(%q) accepted", bad)
		}
	}
}

func TestMachineCRUDAndMACUniqueness(t *testing.T) {
	s, _ := open(t, Options{})
	m, err := s.PutMachine(Machine{Name: "BLD-006", MACs: []string{"52-54-00-00-00-06"}, Profile: "linux", Address: "192.0.2.56/24", Gateway: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if m.MACs[0] != "52:54:00:00:00:06" || m.Created.IsZero() {
		t.Errorf("stored %+v", m)
	}
	if m.Netmask() != "255.255.255.0" || m.IP() != "192.0.2.56" {
		t.Errorf("netmask %s ip %s", m.Netmask(), m.IP())
	}
	got, err := s.MachineByMAC("52:54:00:00:00:06")
	if err != nil || got.Name != "BLD-006" {
		t.Fatalf("by MAC: %v %v", got, err)
	}
	_, err = s.PutMachine(Machine{Name: "BLD-007", MACs: []string{"52:54:00:00:00:06"}})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "BLD-006") {
		t.Fatalf("duplicate MAC: %v", err)
	}
	// Changing MACs releases the old ones.
	m.MACs = []string{"52:54:00:00:00:66"}
	if _, err := s.PutMachine(*m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MachineByMAC("52:54:00:00:00:06"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old MAC still owned: %v", err)
	}
	if err := s.DeleteMachine("BLD-006"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MachineByMAC("52:54:00:00:00:66"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MAC of a removed machine still owned: %v", err)
	}
	for _, bad := range []Machine{
		{Name: "", MACs: []string{"52:54:00:00:00:01"}},
		{Name: "has space", MACs: []string{"52:54:00:00:00:01"}},
		{Name: "x", MACs: []string{"52:54:00:00:00:01"}, Firmware: "coreboot"},
		{Name: "x", Hardware: Hardware{Bay: -3}},
		{Name: "x", Hardware: Hardware{MemoryGB: 16, DIMMs: []DIMM{{Slot: "A1", SizeGB: 8}}}},
		{Name: "x", Hardware: Hardware{Disks: []Disk{{Device: "sda", Use: "ceph"}}}},
		{Name: "x", Hardware: Hardware{BMC: &BMC{Address: "192.0.2.9", Protocol: "telnet"}}},
		{Name: "x", Hardware: Hardware{NICs: []NIC{{MAC: "zz"}}}},
		{Name: "x", MACs: []string{"52:54:00:00:00:01"}, Address: "192.0.2.5"},
		{Name: "x", MACs: []string{"52:54:00:00:00:01", "52-54-00-00-00-01"}},
	} {
		if _, err := s.PutMachine(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestDiscoveryAndAdoption(t *testing.T) {
	s, _ := open(t, Options{})
	mac := "52:54:00:e2:e0:99"
	now := time.Now()
	stored, err := s.AppendEvents([]events.Event{
		{Time: now, MAC: mac, Type: events.DHCPOffer, Attrs: map[string]string{"port": "67"}},
		{Time: now, MAC: mac, Type: events.Script, Attrs: map[string]string{"profile": "menu"}, Facts: map[string]string{"manufacturer": "HP", "product": "ProLiant BL460c Gen8", "serial": "CZ1234"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || stored[0].Machine != DiscoveredName(mac) || stored[1].Seq <= stored[0].Seq {
		t.Fatalf("stored %+v", stored)
	}
	d, err := s.MachineByMAC(mac)
	if err != nil || !d.Discovered || d.Facts.Product != "ProLiant BL460c Gen8" {
		t.Fatalf("discovered %+v %v", d, err)
	}
	// The operator adds the machine with that MAC: facts and timeline move.
	m, err := s.PutMachine(Machine{Name: "BLD-003", MACs: []string{mac}, Profile: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Facts == nil || m.Facts.Serial != "CZ1234" {
		t.Errorf("facts not adopted: %+v", m.Facts)
	}
	evs, err := s.Events("BLD-003", 0, 0)
	if err != nil || len(evs) != 2 || evs[0].Machine != "BLD-003" {
		t.Fatalf("timeline not adopted: %+v %v", evs, err)
	}
	if _, err := s.Machine(DiscoveredName(mac)); !errors.Is(err, ErrNotFound) {
		t.Errorf("discovered record still there: %v", err)
	}
}

func TestTimelineIsBounded(t *testing.T) {
	s, _ := open(t, Options{MaxEventsPerMachine: 10})
	if _, err := s.PutMachine(Machine{Name: "m", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		if _, err := s.AppendEvents([]events.Event{{Machine: "m", Type: events.Asset, Attrs: map[string]string{"i": fmt.Sprint(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := s.Events("m", 0, 0)
	if len(evs) != 10 || evs[0].Attrs["i"] != "15" || evs[9].Attrs["i"] != "24" {
		t.Fatalf("kept %d events, first %v", len(evs), evs[0].Attrs)
	}
	after, _ := s.Events("m", evs[7].Seq, 0)
	if len(after) != 2 {
		t.Errorf("events after seq: %d", len(after))
	}
	last, _ := s.Events("m", 0, 3)
	if len(last) != 3 || last[0].Attrs["i"] != "22" || last[2].Attrs["i"] != "24" {
		t.Errorf("limit: %+v", last)
	}
	// after and limit together: the newest limit steps after the seq.
	both, _ := s.Events("m", evs[7].Seq, 5)
	if len(both) != 2 || both[0].Attrs["i"] != "23" {
		t.Errorf("after and limit: %+v", both)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provisiond.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.PutMachine(Machine{Name: "oden", MACs: []string{"52:54:00:00:01:71"}, Firmware: FirmwareBIOS})
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.Machine("oden")
	if err != nil || m.Firmware != FirmwareBIOS {
		t.Fatalf("after reopen: %+v %v", m, err)
	}
}

// A flood of unknown MACs cannot grow the inventory without bound: past
// MaxDiscovered their events are not stored, and are counted. Removing a
// discovered machine makes room again (after the next recount).
func TestDiscoveryIsBounded(t *testing.T) {
	s, path := open(t, Options{MaxDiscovered: 3})
	var batch []events.Event
	for i := range 10 {
		batch = append(batch, events.Event{Type: events.DHCPOffer, MAC: fmt.Sprintf("52:54:00:00:00:%02x", i)})
	}
	stored, err := s.AppendEvents(batch)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := s.Machines()
	if len(ms) != 3 || len(stored) != 3 || s.DiscoveryRefused() != 7 {
		t.Fatalf("%d machines, %d events stored, %d refused; want 3, 3, 7", len(ms), len(stored), s.DiscoveryRefused())
	}
	// Known MACs still record.
	if stored, _ := s.AppendEvents(batch[:1]); len(stored) != 1 {
		t.Fatalf("event of a discovered machine not stored")
	}
	// The bound survives a restart (counted from the database).
	s.Close()
	s2, err := Open(path, Options{MaxDiscovered: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if stored, _ := s2.AppendEvents(batch[5:6]); len(stored) != 0 {
		t.Fatalf("a fourth discovered machine after restart")
	}
}

// The ProxyDHCP server's per-packet lookup is cached; every change an
// operator makes is seen by the next packet, timeline appends are not
// writes it has to wait for.
func TestBootSettingsFollowChanges(t *testing.T) {
	s, _ := open(t, Options{})
	const mac = "52:54:00:00:00:07"
	check := func(step, fw, bin string, found bool) {
		t.Helper()
		bs, ok, err := s.BootSettingsByMAC(mac)
		if err != nil || ok != found || bs.Firmware != fw || bs.IPXEBinary != bin {
			t.Errorf("%s: settings %+v found %v err %v; want firmware %q binary %q found %v", step, bs, ok, err, fw, bin, found)
		}
	}
	check("unknown", "", "", false)
	check("unknown, cached", "", "", false)
	if _, err := s.PutMachine(Machine{Name: "BLD-007", MACs: []string{mac}, Firmware: FirmwareUEFI}); err != nil {
		t.Fatal(err)
	}
	check("created", FirmwareUEFI, "", true)
	if _, err := s.AppendEvents([]events.Event{{Type: events.DHCPOffer, MAC: mac, Time: time.Now(), Facts: map[string]string{"client_arch": "7"}}}); err != nil {
		t.Fatal(err)
	}
	check("after a timeline append", FirmwareUEFI, "", true)
	if _, err := s.PutMachine(Machine{Name: "BLD-007", MACs: []string{mac}, Firmware: FirmwareBIOS, Params: map[string]string{"ipxe_binary": "snponly.efi"}}); err != nil {
		t.Fatal(err)
	}
	check("changed", FirmwareBIOS, "snponly.efi", true)
	if err := s.DeleteMachine("BLD-007"); err != nil {
		t.Fatal(err)
	}
	check("deleted", "", "", false)
}

// Revision moves with every change an audit reads: a machine written, one
// discovered, facts merged from a step. A timeline step alone keeps it.
func TestRevisionMovesWithRecords(t *testing.T) {
	s, _ := open(t, Options{})
	rev := func() uint64 {
		r, ok := s.Revision()
		if !ok {
			t.Fatal("a bbolt store says another process may write it")
		}
		return r
	}
	r0 := rev()
	if _, err := s.PutMachine(Machine{Name: "BLD-001", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	r1 := rev()
	if r1 == r0 {
		t.Error("a machine written kept the revision")
	}
	step := events.Event{Type: events.DHCPOffer, MAC: "52:54:00:00:00:01", Time: time.Now()}
	if _, err := s.AppendEvents([]events.Event{step}); err != nil {
		t.Fatal(err)
	}
	if r := rev(); r != r1 {
		t.Error("a timeline step alone moved the revision")
	}
	step.Facts = map[string]string{"client_arch": "7"}
	if _, err := s.AppendEvents([]events.Event{step}); err != nil {
		t.Fatal(err)
	}
	r2 := rev()
	if r2 == r1 {
		t.Error("facts merged into a machine kept the revision")
	}
	if _, err := s.AppendEvents([]events.Event{{Type: events.DHCPOffer, MAC: "52:54:00:00:00:99", Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if rev() == r2 {
		t.Error("a machine discovered kept the revision")
	}
}

// A step's facts are merged into the machine's record once: a step
// repeating them within a minute is stored on the timeline without
// rewriting the record; new facts, a write to the machine, or a minute
// later merge again.
func TestRepeatedFactsMergedOnce(t *testing.T) {
	s, _ := open(t, Options{})
	const mac = "52:54:00:00:00:07"
	if _, err := s.PutMachine(Machine{Name: "BLD-007", MACs: []string{mac}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Second)
	step := func(at time.Duration, arch string) {
		t.Helper()
		ev := events.Event{Type: events.DHCPOffer, MAC: mac, Time: t0.Add(at), Facts: map[string]string{"client_arch": arch}}
		if _, err := s.AppendEvents([]events.Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	seen := func() (time.Time, string) {
		t.Helper()
		m, err := s.Machine("BLD-007")
		if err != nil || m.Facts == nil {
			t.Fatalf("BLD-007: %+v %v", m, err)
		}
		return m.Facts.LastSeen, m.Facts.ClientArch
	}
	step(0, "7")
	if at, arch := seen(); !at.Equal(t0) || arch != "7" {
		t.Fatalf("first step: last seen %v arch %s", at, arch)
	}
	step(10*time.Second, "7")
	if at, _ := seen(); !at.Equal(t0) {
		t.Errorf("a repeat of the same facts 10 s later rewrote the record (last seen %v)", at)
	}
	step(20*time.Second, "0")
	if at, arch := seen(); !at.Equal(t0.Add(20*time.Second)) || arch != "0" {
		t.Errorf("new facts not merged: last seen %v arch %s", at, arch)
	}
	if _, err := s.UpdateMachine("BLD-007", func(m *Machine) error { m.Facts = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	step(25*time.Second, "0")
	if at, arch := seen(); !at.Equal(t0.Add(25*time.Second)) || arch != "0" {
		t.Errorf("after a write to the machine the same facts were not merged again: last seen %v arch %s", at, arch)
	}
	step(90*time.Second, "0")
	if at, _ := seen(); !at.Equal(t0.Add(90 * time.Second)) {
		t.Errorf("the same facts a minute later did not move last seen (%v)", at)
	}
	evs, err := s.Events("BLD-007", 0, 0)
	if err != nil || len(evs) != 5 {
		t.Errorf("%d steps on the timeline (%v), want all 5", len(evs), err)
	}
}
