package oatest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// xmldata answers /xmldata?item=all as an OA does: the enclosure, its OAs
// and the filled bays, each blade with its iLO, power and port map.
// Serials come padded with blanks, as a real OA pads them.
func (s *Server) xmldata(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.xmlReads++
	var x strings.Builder
	x.WriteString("<RIMP><MP><ST>1</ST><PRIM>true</PRIM><PN>BladeSystem c7000 DDR2 Onboard Administrator with KVM</PN><FWRI>4.70</FWRI></MP><INFRA2>")
	fmt.Fprintf(&x, "<RACK>UnnamedRack</RACK><ENCL>%s</ENCL><PN>BladeSystem c7000 Enclosure G2</PN><STATUS>OK</STATUS><ENCL_SN>%s</ENCL_SN><PART>507019-B21</PART><UUID>09%s</UUID><BLADES>",
		esc(s.Name), esc(s.Serial), esc(s.Serial))
	bays := make([]int, 0, len(s.blades))
	for bay := range s.blades {
		bays = append(bays, bay)
	}
	sort.Ints(bays)
	for _, bay := range bays {
		x.WriteString(bladeXML(s.blades[bay]))
	}
	x.WriteString("</BLADES><MANAGERS>")
	for i, addr := range s.Managers {
		if addr == "" {
			continue
		}
		role := "STANDBY"
		if (i == 0) != s.Standby {
			role = "ACTIVE"
		}
		fmt.Fprintf(&x, "<MANAGER><BAY><CONNECTION>%d</CONNECTION></BAY><MGMTIPADDR>%s</MGMTIPADDR><NAME>OA-%d</NAME><ROLE>%s</ROLE><STATUS>OK</STATUS><FWRI>4.70</FWRI><BSN>OB%dTEST      </BSN></MANAGER>",
			i+1, esc(addr), i+1, role, i+1)
	}
	watts := 0
	for _, b := range s.blades {
		if b.On {
			watts += 180
		}
	}
	fmt.Fprintf(&x, "</MANAGERS><POWER><TYPE>INTERNAL_DC</TYPE><STATUS>OK</STATUS><CAPACITY>4900</CAPACITY><POWER_CONSUMED>%d</POWER_CONSUMED></POWER></INFRA2></RIMP>", 200+watts)
	w.Header().Set("Content-Type", "text/xml")
	w.Write([]byte(x.String()))
}

func bladeXML(b *Blade) string {
	power, watts := "OFF", 0
	if b.On {
		power, watts = "ON", 180
	}
	var x strings.Builder
	fmt.Fprintf(&x, "<BLADE><BAY><CONNECTION>%d</CONNECTION></BAY><MGMTIPADDR>%s</MGMTIPADDR><MGMTPN>iLO4</MGMTPN><MGMTFWVERSION>2.55 Aug 16 2017</MGMTFWVERSION>"+
		"<PN>%-15s</PN><BLADEROMVER>I31 06/01/2015</BLADEROMVER><SPN>%s</SPN><BSN>%-16s</BSN><UUID>%s</UUID><TYPE>SERVER</TYPE><MANUFACTURER>HP</MANUFACTURER>"+
		"<STATUS>OK</STATUS><UIDSTATUS>%s</UIDSTATUS><PORTMAP><STATUS>OK</STATUS>",
		b.Bay, esc(cmpOr(b.ILOAddress, "0.0.0.0")), esc(b.PartNumber), esc(b.Product), esc(b.Serial), esc(b.UUID), b.UID)
	// The LOM is mezzanine 9 on a Gen8 port map: two ports per device.
	for i := 0; i < len(b.MACs); i += 2 {
		fmt.Fprintf(&x, "<MEZZ><NUMBER>%d</NUMBER><SLOT><TYPE>MEZZ_SLOT_TYPE_ONE</TYPE></SLOT><DEVICE><NAME>HP FlexFabric 10Gb 2-port 554FLB Adapter</NAME><TYPE>MEZZ_DEV_TYPE_ONE</TYPE><STATUS>OK</STATUS>", 9+i/2)
		for p := i; p < i+2 && p < len(b.MACs); p++ {
			mac := strings.ToUpper(b.MACs[p])
			fmt.Fprintf(&x, "<PORT><NUMBER>%d</NUMBER><WWPN>%s</WWPN><TYPE>INTERCONNECT_TYPE_ETH</TYPE><STATUS>OK</STATUS><GUIDS>"+
				"<GUID><TYPE>C</TYPE><FUNCTION>a</FUNCTION><GUID_STRING>%s</GUID_STRING></GUID>"+
				"<GUID><TYPE>G</TYPE><FUNCTION>b</FUNCTION><GUID_STRING>10:00:%s</GUID_STRING></GUID></GUIDS></PORT>", p-i+1, mac, mac, mac)
		}
		x.WriteString("</DEVICE></MEZZ>")
	}
	fmt.Fprintf(&x, "</PORTMAP><POWER><POWERSTATE>%s</POWERSTATE><POWER_CONSUMED>%d</POWER_CONSUMED></POWER><cUUID>%s</cUUID></BLADE>", power, watts, esc(b.CUUID))
	return x.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
