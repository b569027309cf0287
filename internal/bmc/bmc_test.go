package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jacobweinstock/registrar"

	"github.com/bmc-toolbox/bmclib/v2/providers"
)

func TestNormalizePowerState(t *testing.T) {
	for raw, want := range map[string]PowerState{
		"Chassis Power is on\n": On, "Chassis Power is off": Off, "On": On, "Off": Off, "on": On,
		"PoweringOn": PoweringOn, "PoweringOff": PoweringOff, "Paused": Unknown, "": Unknown, "garbage": Unknown,
	} {
		if got := NormalizePowerState(raw); got != want {
			t.Errorf("NormalizePowerState(%q) = %s, want %s", raw, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	if _, err := ParsePowerAction("explode"); err == nil || !strings.Contains(err.Error(), "on, off, soft, cycle, reset") {
		t.Errorf("bad action: %v", err)
	}
	if a, err := ParsePowerAction("CYCLE"); err != nil || a != PowerCycle || !a.PowersUp() {
		t.Errorf("cycle: %v %v", a, err)
	}
	if PowerOff.PowersUp() || PowerSoft.PowersUp() {
		t.Error("off and soft do not power up")
	}
	if _, err := ParseBootDevice("floppy"); err == nil {
		t.Error("floppy accepted")
	}
	if d, err := ParseBootDevice("PXE"); err != nil || d != BootPXE {
		t.Errorf("pxe: %v %v", d, err)
	}
}

// testDriver is a bmclib provider registered in a registry of the test's
// own, as bmclib lets callers do. It keeps a power state and a boot device;
// hang makes every call block (ignoring its context) until release closes;
// fail makes calls fail with a message that echoes the password, as a
// careless provider might.
type testDriver struct {
	mu       sync.Mutex
	password string
	power    string
	boot     string
	calls    []string
	hang     bool
	fail     bool
	release  chan struct{}
}

func (d *testDriver) Name() string { return "testdriver" }

func (d *testDriver) step(call string) error {
	d.mu.Lock()
	d.calls = append(d.calls, call)
	hang, fail := d.hang, d.fail
	d.mu.Unlock()
	if hang {
		<-d.release
	}
	if fail {
		return fmt.Errorf("login refused for password %q", d.password)
	}
	return nil
}

func (d *testDriver) Open(ctx context.Context) error  { return d.step("open") }
func (d *testDriver) Close(ctx context.Context) error { return nil }

func (d *testDriver) PowerStateGet(ctx context.Context) (string, error) {
	if err := d.step("status"); err != nil {
		return "", err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.power, nil
}

func (d *testDriver) PowerSet(ctx context.Context, state string) (bool, error) {
	if err := d.step("power " + state); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch state {
	case "on", "cycle", "reset":
		d.power = "Chassis Power is on"
	case "off", "soft":
		d.power = "Chassis Power is off"
	}
	return true, nil
}

func (d *testDriver) BootDeviceSet(ctx context.Context, dev string, persistent, efi bool) (bool, error) {
	if err := d.step(fmt.Sprintf("bootdev %s persistent=%v efi=%v", dev, persistent, efi)); err != nil {
		return false, err
	}
	d.mu.Lock()
	d.boot = dev
	d.mu.Unlock()
	return true, nil
}

func testDialer(d *testDriver, timeout time.Duration) *Bmclib {
	return NewBmclib(Options{Timeout: timeout, Registry: func(ep Endpoint) *registrar.Registry {
		d.mu.Lock()
		d.password = ep.Password
		d.mu.Unlock()
		r := registrar.NewRegistry()
		r.Register(d.Name(), "ipmi", registrar.Features{providers.FeaturePowerState, providers.FeaturePowerSet, providers.FeatureBootDeviceSet}, nil, d)
		return r
	}})
}

func TestControllerThroughRegistry(t *testing.T) {
	d := &testDriver{power: "Chassis Power is off", release: make(chan struct{})}
	c, err := testDialer(d, 5*time.Second).Dial(context.Background(), Endpoint{Machine: "BLD-006", Host: "192.0.2.10", Username: "admin", Password: "hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx := context.Background()
	if st, err := c.PowerState(ctx); err != nil || st != Off {
		t.Fatalf("state %s, %v", st, err)
	}
	if _, err := c.SetBootDevice(ctx, BootPXE, false, true); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPower(ctx, PowerOnAction); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.PowerState(ctx); st != On {
		t.Errorf("after on: %s", st)
	}
	if _, err := c.Inventory(ctx); err == nil {
		t.Error("a driver without inventory gave one")
	}
	want := "open,status,bootdev pxe persistent=false efi=true,power on,status"
	if got := strings.Join(d.calls, ","); got != want {
		t.Errorf("calls %s, want %s", got, want)
	}
	if d.password != "hunter2" {
		t.Errorf("the driver got password %q", d.password)
	}
}

// A BMC that never answers costs one timeout and an error that names the
// machine and the BMC, even when the provider ignores its context.
func TestTimeoutNeverBlocks(t *testing.T) {
	d := &testDriver{power: "On", release: make(chan struct{})}
	defer close(d.release)
	dl := testDialer(d, 300*time.Millisecond)
	c, err := dl.Dial(context.Background(), Endpoint{Machine: "BLD-009", Host: "192.0.2.19", Port: 623, Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.hang = true
	d.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := c.PowerState(context.Background())
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("PowerState is still waiting on a BMC that never answers")
	}
	if !IsTimeout(err) {
		t.Fatalf("want a timeout, got %v", err)
	}
	for _, w := range []string{"BLD-009", "BMC 192.0.2.19:623 (ipmi)", "power status", "no answer within 300ms"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

func TestErrorsNeverShowThePassword(t *testing.T) {
	d := &testDriver{power: "On", fail: true, release: make(chan struct{})}
	_, err := testDialer(d, time.Second).Dial(context.Background(), Endpoint{Machine: "BLD-003", Host: "192.0.2.13", Password: "s3cret-Pw"})
	if err == nil {
		t.Fatal("dial succeeded")
	}
	var be *Error
	if !errors.As(err, &be) || be.Op != "connect" {
		t.Fatalf("want a connect *Error, got %T %v", err, err)
	}
	if strings.Contains(err.Error(), "s3cret-Pw") {
		t.Errorf("password in error: %v", err)
	}
	if !strings.Contains(err.Error(), "[redacted]") || !strings.Contains(err.Error(), "BLD-003") {
		t.Errorf("error %v", err)
	}
}

func TestDialChecks(t *testing.T) {
	b := NewBmclib(Options{})
	if b.Timeout() != DefaultTimeout {
		t.Errorf("default timeout %s", b.Timeout())
	}
	if _, err := b.Dial(context.Background(), Endpoint{Machine: "x"}); err == nil || !strings.Contains(err.Error(), "--bmc-address") {
		t.Errorf("no address: %v", err)
	}
	if _, err := b.Dial(context.Background(), Endpoint{Machine: "x", Host: "192.0.2.1", Protocol: "telnet"}); err == nil || !strings.Contains(err.Error(), "not ipmi or redfish") {
		t.Errorf("bad protocol: %v", err)
	}
}

// The boot flags decode as ipmitool raw prints Get System Boot Options
// parameter 5; answers that are not parameter 5 or not hex are errors.
func TestParseBootFlags(t *testing.T) {
	for out, want := range map[string]BootFlags{
		" 01 05 80 04 00 00 00\n": {Valid: true, Device: BootPXE},
		" 01 05 e0 08 00 00 00":   {Valid: true, Persistent: true, EFI: true, Device: BootDisk},
		" 01 05 00 04 00 00 00":   {Device: BootPXE},
		" 01 05 80 18 00 00 00":   {Valid: true, Device: BootBIOS},
		" 01 05 00 00 00 00 00":   {},
	} {
		got, err := parseBootFlags(out)
		if err != nil || got != want {
			t.Errorf("parseBootFlags(%q) = %+v, %v; want %+v", out, got, err, want)
		}
	}
	for _, bad := range []string{"", " 01 03 08", "Unable to send RAW command", " 01 05 zz 04"} {
		if f, err := parseBootFlags(bad); err == nil {
			t.Errorf("parseBootFlags(%q) = %+v, want an error", bad, f)
		}
	}
	if s := (BootFlags{Device: BootPXE}).String(); s != "not valid pxe once bios, expires 60 s after set" {
		t.Errorf("String: %q", s)
	}
}

// The registry dials each endpoint with its protocol's Dialer, says so
// when a protocol has none, and refuses protocols it does not know.
func TestRegistry(t *testing.T) {
	d := &testDriver{power: "Chassis Power is on", release: make(chan struct{})}
	r := NewRegistry()
	if err := r.Register("ipmi", testDialer(d, time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("telnet", testDialer(d, time.Second)); err == nil || !strings.Contains(err.Error(), "is not ipmi or redfish") {
		t.Errorf("registering an unknown protocol: %v", err)
	}
	ctx := context.Background()
	c, err := r.Dial(ctx, Endpoint{Machine: "BLD-006", Host: "192.0.2.16"})
	if err != nil {
		t.Fatalf("the default protocol (ipmi): %v", err)
	}
	c.Close(ctx)
	if _, err := r.Dial(ctx, Endpoint{Machine: "R6515", Host: "192.0.2.17", Protocol: "redfish"}); err == nil || !strings.Contains(err.Error(), "no redfish support built in") {
		t.Errorf("a protocol without a Dialer: %v", err)
	}
	if _, err := r.Dial(ctx, Endpoint{Machine: "X", Host: "192.0.2.18", Protocol: "telnet"}); err == nil || !strings.Contains(err.Error(), `"telnet" is not ipmi or redfish`) {
		t.Errorf("an unknown protocol: %v", err)
	}
}
