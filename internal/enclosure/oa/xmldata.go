// Package oa talks to an HP BladeSystem Onboard Administrator (the c7000's
// and c3000's enclosure manager): the bay map from its unauthenticated
// /xmldata?item=all, and its SOAP interface at /hpoa for blade details,
// power, one-time PXE boot and the UID LED, with one login for every bay.
package oa

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/provisiond/provisiond/internal/inventory"
)

// Enclosure is what /xmldata?item=all says about an enclosure.
type Enclosure struct {
	// Name is the enclosure name the operator gave the OA.
	Name string
	// Product, PartNumber and Serial identify the enclosure itself.
	Product, PartNumber, Serial string
	// UUID is the enclosure's UUID as the OA reports it.
	UUID string
	// Status is the enclosure's overall health (OK, DEGRADED, ...).
	Status string
	// Managers are the Onboard Administrators (one or two).
	Managers []Manager
	// Interconnects are the interconnect bays that are filled.
	Interconnects []Interconnect
	// Blades are the device bays that are filled (empty bays are absent).
	Blades []Blade
	// PowerCapacity and PowerConsumed are the enclosure's power budget
	// and what it draws now, in watts (0: not reported).
	PowerCapacity, PowerConsumed int
}

// Manager is one Onboard Administrator module.
type Manager struct {
	Bay int
	// Role is ACTIVE or STANDBY: only the active OA answers SOAP calls.
	Role     string
	Address  string
	Name     string
	Firmware string
	Status   string
	Serial   string
}

// Interconnect is one interconnect bay's module.
type Interconnect struct {
	Bay                             int
	Product, PartNumber, Serial     string
	Type, Status, Address, Firmware string
}

// Blade is one filled device bay.
type Blade struct {
	Bay int
	// Product is the model ("ProLiant BL460c Gen8"); PartNumber and
	// Serial are trimmed of the OA's padding.
	Product, PartNumber, Serial string
	// UUID is the blade's UUID as the OA prints it (HP's form: part
	// number and serial); SMBIOSUUID is its cUUID, the SMBIOS system UUID.
	UUID, SMBIOSUUID string
	// ILOAddress, ILOModel and ILOFirmware describe the blade's iLO.
	ILOAddress, ILOModel, ILOFirmware string
	// ROM is the system ROM (BIOS) version.
	ROM string
	// Power is ON or OFF; Watts what the blade draws now.
	Power string
	Watts int
	// Status is the blade's health; UID its locator LED (ON, OFF, BLINK).
	Status, UID string
	// NICs are the ports of its LOM and mezzanine cards, in port map order.
	NICs []NIC
}

// NIC is one port of a blade's network adapter, from the OA's port map.
type NIC struct {
	// Mezz is the port map's mezzanine number (9 and up: the LOM/FlexLOM).
	Mezz int
	// Port is the adapter's port number.
	Port int
	// Device is the adapter's name.
	Device string
	// MAC is function a's address (the physical function that PXE boots).
	MAC string
}

// UUIDs returns the forms under which a booted OS, iPXE or a BMC may report
// the blade's SMBIOS UUID: as the OA prints its cUUID, and with the first
// three groups byte-swapped (SMBIOS stores them little-endian, and tools
// disagree on the order). Both in lower case; none when there is no cUUID.
func (b Blade) UUIDs() []string {
	u := strings.ToLower(strings.TrimSpace(b.SMBIOSUUID))
	if u == "" {
		return nil
	}
	s, err := inventory.SwapUUID(u)
	if err != nil || s == u {
		return []string{u}
	}
	return []string{u, s}
}

// The XML of /xmldata?item=all, as far as it is read.
type rimp struct {
	Infra struct {
		Name       string     `xml:"ENCL"`
		Product    string     `xml:"PN"`
		PartNumber string     `xml:"PART"`
		Serial     string     `xml:"ENCL_SN"`
		UUID       string     `xml:"UUID"`
		Status     string     `xml:"STATUS"`
		Blades     []xBlade   `xml:"BLADES>BLADE"`
		Switches   []xSwitch  `xml:"SWITCHES>SWITCH"`
		Managers   []xManager `xml:"MANAGERS>MANAGER"`
		Power      struct {
			Capacity int `xml:"CAPACITY"`
			Consumed int `xml:"POWER_CONSUMED"`
		} `xml:"POWER"`
	} `xml:"INFRA2"`
}

type xBay struct {
	Connection int `xml:"CONNECTION"`
}

type xBlade struct {
	Bay         xBay   `xml:"BAY"`
	Address     string `xml:"MGMTIPADDR"`
	ILOModel    string `xml:"MGMTPN"`
	ILOFirmware string `xml:"MGMTFWVERSION"`
	PartNumber  string `xml:"PN"`
	ROM         string `xml:"BLADEROMVER"`
	Product     string `xml:"SPN"`
	Serial      string `xml:"BSN"`
	UUID        string `xml:"UUID"`
	CUUID       string `xml:"cUUID"`
	Status      string `xml:"STATUS"`
	UID         string `xml:"UIDSTATUS"`
	Power       struct {
		State    string `xml:"POWERSTATE"`
		Consumed int    `xml:"POWER_CONSUMED"`
	} `xml:"POWER"`
	Mezz []struct {
		Number  int `xml:"NUMBER"`
		Devices []struct {
			Name  string `xml:"NAME"`
			Ports []struct {
				Number int    `xml:"NUMBER"`
				WWPN   string `xml:"WWPN"`
				Type   string `xml:"TYPE"`
				GUIDs  []struct {
					Function string `xml:"FUNCTION"`
					Type     string `xml:"TYPE"`
					String   string `xml:"GUID_STRING"`
				} `xml:"GUIDS>GUID"`
			} `xml:"PORT"`
		} `xml:"DEVICE"`
	} `xml:"PORTMAP>MEZZ"`
}

type xSwitch struct {
	Bay        xBay   `xml:"BAY"`
	Address    string `xml:"MGMTIPADDR"`
	Serial     string `xml:"BSN"`
	PartNumber string `xml:"PN"`
	Firmware   string `xml:"FWRI"`
	Type       string `xml:"FABRICTYPE"`
	Product    string `xml:"SPN"`
	Status     string `xml:"STATUS"`
}

type xManager struct {
	Bay      xBay   `xml:"BAY"`
	Address  string `xml:"MGMTIPADDR"`
	Name     string `xml:"NAME"`
	Role     string `xml:"ROLE"`
	Status   string `xml:"STATUS"`
	Firmware string `xml:"FWRI"`
	Serial   string `xml:"BSN"`
}

// maxXMLData bounds what is read of /xmldata (a full c7000 answer is about
// 100 KB).
const maxXMLData = 8 << 20

// ParseXMLData reads an OA's /xmldata?item=all answer.
func ParseXMLData(r io.Reader) (*Enclosure, error) {
	var doc rimp
	dec := xml.NewDecoder(io.LimitReader(r, maxXMLData))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("reading the OA's xmldata: %w", err)
	}
	in := doc.Infra
	if in.Name == "" && in.Serial == "" && len(in.Blades) == 0 {
		return nil, fmt.Errorf("the xmldata has no enclosure (INFRA2): is this an Onboard Administrator? (an iLO answers xmldata too)")
	}
	e := &Enclosure{Name: clean(in.Name), Product: clean(in.Product), PartNumber: clean(in.PartNumber), Serial: clean(in.Serial),
		UUID: clean(in.UUID), Status: clean(in.Status), PowerCapacity: in.Power.Capacity, PowerConsumed: in.Power.Consumed}
	for _, m := range in.Managers {
		e.Managers = append(e.Managers, Manager{Bay: m.Bay.Connection, Role: clean(m.Role), Address: clean(m.Address), Name: clean(m.Name),
			Firmware: clean(m.Firmware), Status: clean(m.Status), Serial: clean(m.Serial)})
	}
	for _, s := range in.Switches {
		e.Interconnects = append(e.Interconnects, Interconnect{Bay: s.Bay.Connection, Product: clean(s.Product), PartNumber: clean(s.PartNumber),
			Serial: clean(s.Serial), Type: clean(s.Type), Status: clean(s.Status), Address: address(s.Address), Firmware: clean(s.Firmware)})
	}
	for _, x := range in.Blades {
		b, err := blade(x)
		if err != nil {
			return nil, err
		}
		e.Blades = append(e.Blades, b)
	}
	return e, nil
}

func blade(x xBlade) (Blade, error) {
	if x.Bay.Connection < 1 || x.Bay.Connection > 64 {
		return Blade{}, fmt.Errorf("the xmldata has a blade in bay %d: not a device bay", x.Bay.Connection)
	}
	b := Blade{Bay: x.Bay.Connection, Product: clean(x.Product), PartNumber: clean(x.PartNumber), Serial: clean(x.Serial),
		UUID: clean(x.UUID), SMBIOSUUID: clean(x.CUUID), ILOAddress: address(x.Address), ILOModel: clean(x.ILOModel),
		ILOFirmware: clean(x.ILOFirmware), ROM: clean(x.ROM), Power: clean(x.Power.State), Watts: x.Power.Consumed,
		Status: clean(x.Status), UID: clean(x.UID)}
	for _, m := range x.Mezz {
		for _, d := range m.Devices {
			for _, p := range d.Ports {
				mac := ""
				for _, g := range p.GUIDs {
					if g.Function == "a" {
						mac = g.String
						break
					}
				}
				if mac == "" && p.Type == "INTERCONNECT_TYPE_ETH" {
					mac = p.WWPN
				}
				norm, err := inventory.NormalizeMAC(clean(mac))
				if err != nil {
					continue // a Fibre Channel WWPN or an empty port
				}
				b.NICs = append(b.NICs, NIC{Mezz: m.Number, Port: p.Number, Device: clean(d.Name), MAC: norm})
			}
		}
	}
	return b, nil
}

// clean trims the OA's padding (serials and part numbers come padded with
// blanks) and its "[Unknown]".
func clean(s string) string {
	s = strings.TrimSpace(s)
	if s == "[Unknown]" {
		return ""
	}
	return s
}

// address is an IPv4 management address, "" for the OA's 0.0.0.0 (none).
func address(s string) string {
	s = clean(s)
	if s == "0.0.0.0" {
		return ""
	}
	return s
}
