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
}

// All lists the protocols, the default first.
func All() []Protocol {
	return []Protocol{
		{Name: IPMI, DefaultPort: 623, Description: "IPMI over LAN (lanplus, through ipmitool)"},
		{Name: Redfish, DefaultPort: 443, Inventory: true, Description: "Redfish over HTTPS"},
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

// Names is the protocols' names for messages: "ipmi or redfish".
func Names() string {
	var n []string
	for _, p := range All() {
		n = append(n, p.Name)
	}
	if len(n) < 2 {
		return strings.Join(n, "")
	}
	return strings.Join(n[:len(n)-1], ", ") + " or " + n[len(n)-1]
}
