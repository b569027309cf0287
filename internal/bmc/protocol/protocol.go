// Package protocol names the protocols provisiond reaches management
// controllers with, and what each offers. It has no dependencies, so the
// inventory validates with it and the BMC layer dials with it: adding a
// protocol is one entry here and one Dialer registered for it (bmc.Registry).
package protocol

import (
	"fmt"
	"strings"
)

// Names of the protocols.
const (
	IPMI    = "ipmi"
	Redfish = "redfish"
	// OA is a blade enclosure's Onboard Administrator: the record of the
	// enclosure names it, and its blades may be controlled through it.
	OA = "oa"
)

// Protocol is one way to reach a controller.
type Protocol struct {
	// Name is how records and flags name it.
	Name string
	// DefaultPort is used when a record gives none.
	DefaultPort int
	// Inventory says the controller reports the machine's hardware.
	Inventory bool
	// Description says what it is, for help texts.
	Description string
	// Enclosure says it is an enclosure's manager, not a machine's BMC:
	// only enclosure records name it.
	Enclosure bool
}

// All lists the protocols, the default first.
func All() []Protocol {
	return []Protocol{
		{Name: IPMI, DefaultPort: 623, Description: "IPMI over LAN (lanplus, through ipmitool)"},
		{Name: Redfish, DefaultPort: 443, Inventory: true, Description: "Redfish over HTTPS"},
		{Name: OA, DefaultPort: 443, Enclosure: true, Description: "an HP BladeSystem Onboard Administrator (SOAP over HTTPS), for the blades in its bays"},
	}
}

// Lookup returns the protocol called name ("" is the default, IPMI).
func Lookup(name string) (Protocol, error) {
	if name == "" {
		name = IPMI
	}
	for _, p := range All() {
		if p.Name == name {
			return p, nil
		}
	}
	return Protocol{}, fmt.Errorf("BMC protocol %q is not %s", name, Names())
}

// Names is the machine BMC protocols' names for messages: "ipmi or
// redfish".
func Names() string {
	var n []string
	for _, p := range All() {
		if !p.Enclosure {
			n = append(n, p.Name)
		}
	}
	if len(n) < 2 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}
