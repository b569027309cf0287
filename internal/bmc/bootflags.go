package bmc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// BootFlags is what an IPMI BMC reports of the next boot after a
// boot-device call: its system boot options parameter 5 (boot flags) and
// whether parameter 3 keeps the flags past the 60 s timeout (IPMI v2.0,
// section 28.13). Without the timeout disabled the BMC clears the flags
// 60 s after they are set: a blade that waits in its enclosure's power
// budget, or a long POST, then boots from disk.
type BootFlags struct {
	// Valid is the "boot flags valid" bit: the BMC will apply them.
	Valid bool `json:"valid" yaml:"valid"`
	// Device is the device the flags select ("" for none).
	Device BootDevice `json:"device,omitempty" yaml:"device,omitempty"`
	// Persistent and EFI are the flags' persistence and boot type bits.
	Persistent bool `json:"persistent" yaml:"persistent"`
	EFI        bool `json:"efi" yaml:"efi"`
	// TimeoutDisabled says the 60 s valid-bit timeout is off (parameter 3,
	// bit 3), so the flags wait for the next boot however late it comes.
	TimeoutDisabled bool `json:"timeout_disabled" yaml:"timeout_disabled"`
	// TimeoutNote says why the timeout could not be disabled ("" when it was).
	TimeoutNote string `json:"timeout_note,omitempty" yaml:"timeout_note,omitempty"`
}

// String renders the flags for a timeline: "valid pxe once bios, 60 s
// timeout off".
func (f BootFlags) String() string {
	var b strings.Builder
	if f.Valid {
		b.WriteString("valid ")
	} else {
		b.WriteString("not valid ")
	}
	b.WriteString(cmp.Or(string(f.Device), "none"))
	if f.Persistent {
		b.WriteString(" persistent")
	} else {
		b.WriteString(" once")
	}
	if f.EFI {
		b.WriteString(" efi")
	} else {
		b.WriteString(" bios")
	}
	if f.TimeoutDisabled {
		b.WriteString(", 60 s timeout off")
	} else {
		b.WriteString(", expires 60 s after set")
	}
	return b.String()
}

// ipmiDevices maps the boot device selector (boot flags data 2, bits 5:2)
// to provisiond's devices.
var ipmiDevices = map[byte]BootDevice{0x1: BootPXE, 0x2: BootDisk, 0x5: BootCDROM, 0x6: BootBIOS}

// parseBootFlags decodes Get System Boot Options parameter 5 as ipmitool
// raw prints it: parameter version, parameter, then data 1 to 5.
func parseBootFlags(out string) (BootFlags, error) {
	b, err := parseRaw(out)
	if err != nil {
		return BootFlags{}, err
	}
	if len(b) < 4 || b[1]&0x7f != 5 {
		return BootFlags{}, fmt.Errorf("boot flags answer %q is not parameter 5", strings.TrimSpace(out))
	}
	d1, d2 := b[2], b[3]
	dev, ok := ipmiDevices[(d2>>2)&0x0f]
	if !ok && (d2>>2)&0x0f != 0 {
		dev = BootDevice(fmt.Sprintf("device 0x%x", (d2>>2)&0x0f))
	}
	return BootFlags{Valid: d1&0x80 != 0, Persistent: d1&0x40 != 0, EFI: d1&0x20 != 0, Device: dev}, nil
}

// parseRaw reads ipmitool raw's hex output (" 01 05 80 04 00 00 00").
func parseRaw(out string) ([]byte, error) {
	var b []byte
	for _, f := range strings.Fields(out) {
		v, err := strconv.ParseUint(f, 16, 8)
		if err != nil {
			return nil, fmt.Errorf("unexpected ipmitool output %q", strings.TrimSpace(out))
		}
		b = append(b, byte(v))
	}
	return b, nil
}

// ipmitool runs ipmitool against the endpoint (lanplus, password from the
// environment as bmclib passes it, cipher suite 3 then 17 unless one is
// recorded) with args, bounded by ctx. bmclib's provider has no raw
// command, and the boot flags need two.
func (c *controller) ipmitool(ctx context.Context, args ...string) (string, error) {
	path := c.ipmitoolPath
	if path == "" {
		path = "ipmitool"
	}
	base := []string{"-I", "lanplus", "-H", c.ep.Host, "-U", c.ep.Username, "-E", "-N", "5", "-R", "2"}
	if c.ep.Port != 0 {
		base = append(base, "-p", strconv.Itoa(c.ep.Port))
	}
	suites := []string{"3", "17"}
	if c.ep.CipherSuite != 0 {
		suites = []string{strconv.Itoa(c.ep.CipherSuite)}
	}
	var out []byte
	var err error
	for _, cs := range suites {
		cmd := exec.CommandContext(ctx, path, append(append(base, "-C", cs), args...)...)
		cmd.Env = []string{"IPMITOOL_PASSWORD=" + c.ep.Password}
		out, err = cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		msg := strings.Join(strings.Fields(string(out)), " ")
		if msg == "" {
			msg = err.Error()
		}
		return "", errors.New(msg)
	}
	return string(out), nil
}

// setIPMIBootDevice disables the 60 s valid-bit timeout, sets the boot
// device through bmclib and reads the flags back. It fails when they did
// not stick; a BMC that refuses to disable the timeout is reported in the
// flags, not failed (the flags still hold for 60 s).
func (c *controller) setIPMIBootDevice(ctx context.Context, d BootDevice, persistent, efi bool) (*BootFlags, error) {
	op := "boot device " + string(d)
	var timeoutNote string
	// Parameter 3, data 1 bit 3: don't clear the valid bit when no chassis
	// control command arrives within 60 s.
	if err := c.call(ctx, op+": disable the 60 s boot flag timeout", func(ctx context.Context) error {
		_, err := c.ipmitool(ctx, "raw", "0x00", "0x08", "0x03", "0x08")
		return err
	}); err != nil {
		if IsTimeout(err) {
			return nil, err
		}
		var e *Error
		if errors.As(err, &e) {
			timeoutNote = "the BMC refused to disable the 60 s boot flag timeout (" + e.Detail + "): power the machine on within 60 s"
		}
	}
	if err := c.call(ctx, op, func(ctx context.Context) error {
		ok, err := c.cl.SetBootDevice(ctx, string(d), persistent, efi)
		if err == nil && !ok {
			err = errors.New("the BMC refused the request")
		}
		return err
	}); err != nil {
		return nil, err
	}
	var flags BootFlags
	if err := c.call(ctx, op+": read the boot flags back", func(ctx context.Context) error {
		out, err := c.ipmitool(ctx, "raw", "0x00", "0x09", "0x05", "0x00", "0x00")
		if err != nil {
			return err
		}
		flags, err = parseBootFlags(out)
		return err
	}); err != nil {
		return nil, err
	}
	if timeoutNote == "" {
		var clearing []byte
		err := c.call(ctx, op+": read the boot flag timeout back", func(ctx context.Context) error {
			out, err := c.ipmitool(ctx, "raw", "0x00", "0x09", "0x03", "0x00", "0x00")
			if err == nil {
				clearing, err = parseRaw(out)
			}
			return err
		})
		switch {
		case err != nil:
			timeoutNote = "the BMC accepted the timeout setting but cannot read it back: power the machine on within 60 s to be sure"
		case len(clearing) < 3 || clearing[2]&0x08 == 0:
			timeoutNote = "the BMC did not keep the 60 s boot flag timeout disabled: power the machine on within 60 s"
		}
	}
	flags.TimeoutDisabled = timeoutNote == ""
	flags.TimeoutNote = timeoutNote
	if !flags.Valid || flags.Device != d || flags.EFI != efi || flags.Persistent != persistent {
		want := BootFlags{Valid: true, Device: d, Persistent: persistent, EFI: efi, TimeoutDisabled: flags.TimeoutDisabled}
		return &flags, &Error{Machine: c.ep.Machine, Where: c.ep.where(), Op: op,
			Detail: fmt.Sprintf("the BMC did not keep the boot flags: it reports %q, want %q (the next boot would not use %s; check the BMC's boot order settings, then retry)", flags.String(), want.String(), d)}
	}
	return &flags, nil
}
