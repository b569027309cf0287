package agent

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// dimm17 builds an SMBIOS 2.8 type-17 structure with its strings.
func dimm17(handle uint16, sizeField uint16, ext uint32, memType byte, detail, speed uint16, strs ...string) []byte {
	f := make([]byte, 0x28)
	f[0], f[1] = 17, 0x28
	binary.LittleEndian.PutUint16(f[2:], handle)
	binary.LittleEndian.PutUint16(f[0x0C:], sizeField)
	f[0x10] = 1 // device locator: string 1
	f[0x12] = memType
	binary.LittleEndian.PutUint16(f[0x13:], detail)
	binary.LittleEndian.PutUint16(f[0x15:], speed)
	if len(strs) > 1 {
		f[0x18] = 2 // serial: string 2
	}
	if len(strs) > 2 {
		f[0x1A] = 3 // part number: string 3
	}
	binary.LittleEndian.PutUint32(f[0x1C:], ext)
	for _, s := range strs {
		f = append(f, s...)
		f = append(f, 0)
	}
	if len(strs) == 0 {
		f = append(f, 0)
	}
	return append(f, 0)
}

func TestParseDIMMs(t *testing.T) {
	var table []byte
	table = append(table, 0, 0x18, 0, 0) // a type-0 header...
	table = append(table, make([]byte, 0x14)...)
	table = append(table, "HP\x00I31\x00\x00"...)
	table = append(table, dimm17(0x1100, 8192, 0, 0x18, 1<<13, 1600, "PROC 1 DIMM 1", "0F1E2D3C", "  664690-001  ")...)
	table = append(table, dimm17(0x1101, 0, 0, 0x02, 0, 0, "PROC 1 DIMM 2")...) // empty slot
	table = append(table, dimm17(0x1102, 0x7FFF, 65536, 0x1A, 1<<13, 2400, "CPU2_DIMM_A1", "Not Specified")...)
	table = append(table, dimm17(0x1103, 0x8000|16384, 0, 0x18, 0, 1333)...) // size in KB, no strings
	table = append(table, 127, 4, 0xff, 0xfe, 0, 0)
	got := ParseDIMMs(table)
	want := "[{PROC 1 DIMM 1 8 DDR3 registered 1600  0F1E2D3C 664690-001} {CPU2_DIMM_A1 64 DDR4 registered 2400   } { 0.015625 DDR3 1333   }]"
	if fmt.Sprint(got) != want {
		t.Errorf("got  %v\nwant %s", got, want)
	}
	// Truncated and garbage tables end the walk without a panic.
	for i := range table {
		ParseDIMMs(table[:i])
	}
	ParseDIMMs([]byte{17, 2, 0, 0})
	ParseDIMMs([]byte{17, 0xff, 0, 0, 1})
}

// hpLocator builds an HP type-204 structure (System/Rack Locator) as a
// c7000's blade reports it: strings for rack, enclosure, model, bay and
// serial; byte fields for the enclosure's bays and how many are filled.
func hpLocator(rack, enclosure, model, bay, serial string, bays, filled byte) []byte {
	f := make([]byte, 0x0B)
	f[0], f[1] = 204, 0x0B
	binary.LittleEndian.PutUint16(f[2:], 0xCC00)
	f[0x04], f[0x05], f[0x06], f[0x07], f[0x0A] = 1, 2, 3, 4, 5
	f[0x08], f[0x09] = bays, filled
	for _, s := range []string{rack, enclosure, model, bay, serial} {
		f = append(f, s...)
		f = append(f, 0)
	}
	return append(f, 0)
}

func TestParseLocator(t *testing.T) {
	var table []byte
	table = append(table, dimm17(0x1100, 8192, 0, 0x18, 1<<13, 1600, "PROC 1 DIMM 1")...)
	table = append(table, hpLocator("Rack_208", "ASGARD                          ", "BladeSystem c7000 Enclosure G2", "7                               ", "GB8925V2C9", 16, 1)...)
	table = append(table, 127, 4, 0xff, 0xfe, 0, 0)
	loc, ok := ParseLocator(table)
	if !ok || loc.Enclosure != "ASGARD" || loc.Bay != 7 || loc.EnclosureSerial != "GB8925V2C9" {
		t.Errorf("locator %+v %v", loc, ok)
	}
	// A rack server (no type 204), an empty bay string, a cut structure.
	for _, bad := range [][]byte{dimm17(0x1100, 8192, 0, 0x18, 0, 1600, "DIMM"), hpLocator("", "ASGARD", "", "", "", 16, 1), hpLocator("r", "ASGARD", "m", "3", "s", 16, 1)[:9]} {
		if loc, ok := ParseLocator(bad); ok {
			t.Errorf("found %+v in %x", loc, bad)
		}
	}
}
