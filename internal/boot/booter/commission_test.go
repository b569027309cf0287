package booter

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/commission"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/pxe"
)

// imageValues stands in for the commissioning image's provider (the
// image itself is built and booted by the e2e test): the paths it gives.
type imageValues struct{}

func (imageValues) Name() string                  { return "commission" }
func (imageValues) Wants(p *profile.Profile) bool { return slices.Contains(p.Uses, "commission") }
func (imageValues) Values(context.Context, *inventory.Machine, map[string]string) (map[string]string, error) {
	return map[string]string{"kernel": "commission/6.1.0-57-amd64-abc/vmlinuz", "initrd": "commission/6.1.0-57-amd64-abc/initrd.img",
		"kernel_version": "6.1.0-57-amd64", "modules": "45"}, nil
}

var reportURL = regexp.MustCompile(`provisiond\.report=(\S+/facts\?nonce=(\S+))`)

func report(t *testing.T, steps ...commission.Step) []byte {
	t.Helper()
	raw, err := json.Marshal(commission.Report{Then: commission.ThenPowerOff, Steps: steps, Hardware: inventory.Hardware{
		Vendor: "HP", Model: "ProLiant BL460c Gen8", Serial: "CZ3301XYZ", UUID: "30333536-3135-5a43-3333-303158595a00",
		CPUs:  []inventory.CPU{{Socket: 1, Model: "Intel(R) Xeon(R) CPU E5-2650 v2 @ 2.60GHz", Cores: 8, Threads: 16}},
		DIMMs: []inventory.DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 16, PartNumber: "672631-B21"}},
		NICs:  []inventory.NIC{{MAC: testMAC, Name: "eno1", Driver: "be2net", Boot: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A machine commissioned by MAC: its script carries the report URL with
// the boot's nonce; the report is taken from the machine's own address
// with that nonce, once; failed steps and the report go on the timeline;
// the one-shot assignment is used up by the image.
func TestCommissionReport(t *testing.T) {
	b, store, _, sink := newTestBooter(t, imageValues{})
	b.facts = store
	store.PutMachine(inventory.Machine{Name: "BLD-009", MACs: []string{testMAC}, Profile: "commission", Once: &inventory.Once{Then: "local", Params: map[string]string{"hold": "true"}}})
	body, prof := script(t, b, "")
	m := reportURL.FindStringSubmatch(body)
	if prof != "commission" || m == nil || !regexp.MustCompile(`provisiond\.hold `).MatchString(body) {
		t.Fatalf("the commission script:\n%s", body)
	}
	nonce := m[2]
	b.Report(assetStep("commission/6.1.0-57-amd64-abc/vmlinuz"))
	b.Report(assetStep("commission/6.1.0-57-amd64-abc/initrd.img"))
	if got, _ := store.Machine("BLD-009"); got.Once != nil || got.Profile != "local" {
		t.Errorf("the one-shot is not used up by the image: %+v", got)
	}
	ctx := context.Background()
	req := machineReq("")
	req.Nonce = nonce
	stranger := strangerReq("")
	stranger.Nonce = nonce
	if _, err := b.Facts(ctx, stranger, report(t)); !errors.Is(err, pxe.ErrRefused) {
		t.Errorf("a stranger's report with the nonce: %v", err)
	}
	wrong := req
	wrong.Nonce = "not-the-nonce"
	if _, err := b.Facts(ctx, wrong, report(t)); !errors.Is(err, pxe.ErrRefused) {
		t.Errorf("a wrong nonce: %v", err)
	}
	if _, err := b.Facts(ctx, req, []byte(`{"hardware":{},"bogus":1}`)); !errors.Is(err, pxe.ErrBadReport) {
		t.Errorf("a malformed report: %v", err)
	}
	ans, err := b.Facts(ctx, req, report(t, commission.Step{Name: "dhcp", Detail: "eno1: DHCP: no answer in 30s; using iPXE's address 192.0.2.50/25", Seconds: 31}))
	if err != nil {
		t.Fatalf("the machine's report: %v", err)
	}
	var fa FactsAnswer
	json.Unmarshal(ans, &fa)
	got, _ := store.Machine("BLD-009")
	if fa.Machine != "BLD-009" || got.Observed == nil || got.Observed.Source != inventory.ObservedCommission || len(got.CPUs) != 1 || got.DIMMs[0].PartNumber != "672631-B21" {
		t.Errorf("answer %s, record %+v", ans, got)
	}
	if _, err := b.Facts(ctx, req, report(t)); !errors.Is(err, pxe.ErrRefused) {
		t.Errorf("the same nonce twice: %v", err)
	}
	steps, reps := sink.of(events.CommissionStep), sink.of(events.FactsReported)
	if len(steps) != 1 || steps[0].Attrs["step"] != "dhcp" || steps[0].Machine != "BLD-009" {
		t.Errorf("step events %+v", steps)
	}
	if len(reps) != 1 || reps[0].Attrs["source"] != "commission" || reps[0].Attrs["cpus"] != "1" || reps[0].Attrs["then"] != "poweroff" {
		t.Errorf("report events %+v", reps)
	}
	refusals := append(sink.of(events.SecretRefused), sink.of(events.SpoofAlarm)...)
	var reasons []string
	for _, r := range refusals {
		if r.Attrs["what"] == "facts" {
			reasons = append(reasons, r.Attrs["reason"])
		}
	}
	if !slices.Contains(reasons, bootguard.ReasonSource) || !slices.Contains(reasons, bootguard.ReasonNonce) || !slices.Contains(reasons, bootguard.ReasonAgain) {
		t.Errorf("refusals on the timeline: %v", reasons)
	}
	if len(sink.of(events.CommissionFailed)) != 0 {
		t.Error("a machine that reported is said to have failed")
	}
}

// A commissioning machine that never reports (no driver for its NIC, no
// network) gets a commission.failed step once report_within has passed
// since its image went out.
func TestCommissionNoReport(t *testing.T) {
	b, store, _, sink := newTestBooter(t, imageValues{})
	b.facts = store
	b.SetCommission(CommissionRules{ReportWithin: 50 * time.Millisecond})
	store.PutMachine(inventory.Machine{Name: "BLD-010", MACs: []string{testMAC}, Profile: "commission", Once: &inventory.Once{Then: "local"}})
	script(t, b, "")
	b.Report(assetStep("commission/6.1.0-57-amd64-abc/vmlinuz"))
	if len(sink.of(events.CommissionFailed)) != 0 {
		t.Fatal("failed before the image went out")
	}
	b.Report(assetStep("commission/6.1.0-57-amd64-abc/initrd.img"))
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.of(events.CommissionFailed)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	f := sink.of(events.CommissionFailed)
	if len(f) != 1 || f[0].Machine != "BLD-010" || f[0].Attrs["within"] != "50ms" {
		t.Errorf("failure steps %+v", f)
	}
}

// With commission.auto an unknown MAC gets the commission profile (not the
// default) with a nonce for its report, which lands on its discovered
// record; a record it matches by serial is named, not merged.
func TestCommissionUnknown(t *testing.T) {
	b, store, _, sink := newTestBooter(t, imageValues{})
	b.facts = store
	store.PutMachine(inventory.Machine{Name: "BLD-005", Hardware: inventory.Hardware{Serial: "CZ3301XYZ", Enclosure: "", Bay: 0}})
	ctx := context.Background()
	// Off: the default profile, no nonce.
	body, prof := script(t, b, "")
	if prof != "menu" || reportURL.MatchString(body) {
		t.Fatalf("without commission.auto: %s\n%s", prof, body)
	}
	b.SetCommission(CommissionRules{Auto: true, ReportWithin: time.Minute})
	store.AppendEvents([]events.Event{{MAC: testMAC, Type: events.DHCPOffer}}) // the recorder's discovery
	body, prof = script(t, b, "")
	m := reportURL.FindStringSubmatch(body)
	if prof != "commission" || m == nil {
		t.Fatalf("with commission.auto: %s\n%s", prof, body)
	}
	req := machineReq("")
	req.Nonce = m[2]
	ans, err := b.Facts(ctx, req, report(t))
	if err != nil {
		t.Fatal(err)
	}
	var fa FactsAnswer
	json.Unmarshal(ans, &fa)
	disc, _ := store.Machine(inventory.DiscoveredName(testMAC))
	if fa.Machine != disc.Name || fa.Matches != "BLD-005 by serial" || disc.Observed == nil || !disc.Discovered {
		t.Errorf("answer %+v, discovered %+v", fa, disc)
	}
	if bld, _ := store.Machine("BLD-005"); len(bld.MACs) != 0 || bld.Observed != nil {
		t.Errorf("a match by serial changed BLD-005: %+v", bld)
	}
	if reps := sink.of(events.FactsReported); len(reps) != 1 || reps[0].Attrs["matches"] != "BLD-005 by serial" || reps[0].Machine != "" || reps[0].MAC != testMAC {
		t.Errorf("report events %+v", reps)
	}
}

type noDriver struct{}

func (noDriver) BootNIC(busid string) (string, bool) {
	return "no driver in the commissioning image for the boot NIC, PCI 8086:100e", busid != "01:80:86:10:0e"
}

// A commissioning script for a boot NIC the image has no driver for puts
// that on the timeline as it goes out.
func TestCommissionBootNIC(t *testing.T) {
	b, store, _, sink := newTestBooter(t, imageValues{})
	b.nics = noDriver{}
	store.PutMachine(inventory.Machine{Name: "BLD-011", MACs: []string{testMAC}, Profile: "commission", Once: &inventory.Once{Then: "local"}})
	pxeStart(b)
	req := machineReq("")
	req.Facts = map[string]string{"busid": "01:1a:f4:10:00"}
	if _, err := b.Script(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if len(sink.of(events.CommissionStep)) != 0 {
		t.Fatal("a NIC the image drives is reported")
	}
	pxeStart(b)
	req.Facts["busid"] = "01:80:86:10:0e"
	if _, err := b.Script(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if s := sink.of(events.CommissionStep); len(s) != 1 || s[0].Attrs["step"] != "nic" || s[0].Machine != "BLD-011" {
		t.Errorf("steps %+v", s)
	}
}
