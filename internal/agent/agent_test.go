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
