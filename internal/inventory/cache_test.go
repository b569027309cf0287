package inventory

import (
	"testing"

	"github.com/provisiond/provisiond/internal/kv"
)

// TestTableApply: the boot table takes changes in revision order per key
// (an older report never undoes a newer one) and keeps boot settings in
// step with the MAC index and the records.
func TestTableApply(t *testing.T) {
	c := &cache{t: newTable()}
	c.t.rev = 10
	rec := func(fw string) []byte {
		return []byte(`{"name":"BLD-001","macs":["52:54:00:00:00:01"],"firmware":"` + fw + `"}`)
	}
	c.apply([]kv.Change{
		{Bucket: "machines", Key: "BLD-001", Value: rec("uefi"), Rev: 11},
		{Bucket: "macs", Key: "52:54:00:00:00:01", Value: []byte("BLD-001"), Rev: 11},
	})
	boot := func() (BootSettings, bool) {
		var bs BootSettings
		var ok bool
		c.read(func(t *table) { bs, ok = t.boot["52:54:00:00:00:01"] })
		return bs, ok
	}
	if bs, ok := boot(); !ok || bs.Firmware != "uefi" {
		t.Fatalf("after the machine's first write: %+v, %v", bs, ok)
	}
	c.apply([]kv.Change{{Bucket: "machines", Key: "BLD-001", Value: rec("bios"), Rev: 13}})
	c.apply([]kv.Change{{Bucket: "machines", Key: "BLD-001", Value: rec("uefi"), Rev: 12}}) // late, older
	if bs, _ := boot(); bs.Firmware != "bios" {
		t.Errorf("an older change undid a newer one: firmware %q", bs.Firmware)
	}
	c.apply([]kv.Change{{Bucket: "machines", Key: "BLD-002", Value: rec("uefi"), Rev: 9}}) // before the read
	if _, err := c.t.machine("BLD-002"); err == nil {
		t.Error("a change older than the table's read was applied")
	}
	c.apply([]kv.Change{{Bucket: "macs", Key: "52:54:00:00:00:01", Rev: 14}}) // the MAC removed
	if _, ok := boot(); ok {
		t.Error("a removed MAC still has boot settings")
	}
}
