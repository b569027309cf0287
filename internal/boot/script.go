package boot

import (
	"fmt"
	"net/url"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
)

// Fact is one iPXE setting the first-stage script reports, and the query
// parameter it travels in. Raw is set for settings whose default format is
// already URL-safe (a UUID, an IPv4 address): iPXE's uristring format would
// percent-encode their binary value, NUL bytes included, which cuts the URL.
type Fact struct {
	Param, Setting string
	Raw            bool
}

// Facts lists the facts the first-stage script reports.
func Facts() []Fact {
	return []Fact{
		{"manufacturer", "manufacturer", false},
		{"product", "product", false},
		{"serial", "serial", false},
		{"uuid", "uuid", true},
		{"platform", "platform", false},
		{"buildarch", "buildarch", false},
		{"chip", "netX/chip", false},
		{"ip", "netX/ip", true},
		// The boot NIC's bus, vendor and device (01:80:86:10:0e: PCI
		// 8086:100e), for the commissioning image's driver check.
		{"busid", "netX/busid", true},
		// The SMBIOS chassis asset tag: a machine's asset key, checked
		// by the boot guard, never recorded.
		{"asset", "asset", false},
	}
}

// FirstStage is the script iPXE gets from its DHCP boot file URL: it asks
// for the machine's real script and reports what iPXE knows about the
// hardware on the way.
func FirstStage(mac, baseURL string) []byte {
	u := baseURL + "/boot/" + url.PathEscape(mac) + "/script?"
	for i, f := range Facts() {
		if i > 0 {
			u += "&"
		}
		if f.Raw {
			u += f.Param + "=${" + f.Setting + "}"
		} else {
			u += f.Param + "=${" + f.Setting + ":uristring}"
		}
	}
	return []byte(fmt.Sprintf("#!ipxe\nchain --autofree %s || goto failed\n\n:failed\necho provisiond: could not fetch the boot script for %s; continuing with the next boot device in 10 seconds\nsleep 10\nexit\n", u, mac))
}

// ProfileFor returns the profile name machine m boots (defaultProfile for an
// unknown machine or one without a profile).
func ProfileFor(m *inventory.Machine, defaultProfile string) string {
	if m != nil && m.Profile != "" && !m.Discovered {
		return m.Profile
	}
	return defaultProfile
}

// ScriptData assembles what a profile template sees for machine m (nil for
// an unknown MAC) booting from mac, reached at baseURL.
func ScriptData(m *inventory.Machine, mac, baseURL, profileName string, defaults map[string]string) profile.Data {
	d := profile.Data{
		Name:        inventory.DiscoveredName(mac),
		MAC:         mac,
		Profile:     profileName,
		BaseURL:     baseURL,
		CallbackURL: baseURL + "/boot/" + mac + "/booted",
		FactsURL:    baseURL + "/boot/" + mac + "/facts",
		ScriptURL:   baseURL + "/" + ScriptPath(mac),
		ProfileURL:  baseURL + "/boot/" + mac + "/script?profile=",
		OverlayURL:  baseURL + "/boot/" + mac + "/overlay.cpio?profile=" + profileName,
		Discovered:  true,
		Params:      map[string]string{},
	}
	for k, v := range defaults {
		d.Params[k] = v
	}
	if m == nil {
		return d
	}
	d.Name = m.Name
	d.Discovered = m.Discovered
	d.Hostname = m.Hostname
	d.IP = m.IP()
	d.Netmask = m.Netmask()
	d.Gateway = m.Gateway
	d.KernelArgs = m.KernelArgs
	d.Once = m.Once != nil && m.Profile == profileName
	for k, v := range m.Params {
		d.Params[k] = v
	}
	if d.Once {
		for k, v := range m.Once.Params {
			d.Params[k] = v
		}
	}
	return d
}
