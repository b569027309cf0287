package talos

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestEmptySchematicID(t *testing.T) {
	id, err := New(nil, nil).ID()
	if err != nil || id != EmptyID {
		t.Fatalf("empty schematic ID %s, want the factory's %s", id, EmptyID)
	}
	raw, _ := New(nil, nil).YAML()
	if string(raw) != "customization: {}\n" {
		t.Errorf("empty schematic YAML %q", raw)
	}
}

func TestSchematicYAML(t *testing.T) {
	s := New([]string{"siderolabs/bnx2-bnx2x", " siderolabs/intel-ucode ", ""}, []string{"net.ifnames=0"})
	raw, _ := s.YAML()
	want := "customization:\n    extraKernelArgs:\n        - net.ifnames=0\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/bnx2-bnx2x\n            - siderolabs/intel-ucode\n"
	if string(raw) != want {
		t.Errorf("YAML:\n%s\nwant:\n%s", raw, want)
	}
	a, _ := s.ID()
	b, _ := New([]string{"siderolabs/intel-ucode", "siderolabs/bnx2-bnx2x"}, []string{"net.ifnames=0"}).ID()
	if a == b || len(a) != 64 {
		t.Errorf("IDs %s %s: order is part of the schematic, as in the factory", a, b)
	}
}

// fakeFactory hashes what it receives the way the factory does: decode
// into the model, marshal, sha256.
func fakeFactory(t *testing.T, tamper bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/schematics" {
			http.NotFound(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		var s Schematic
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, _ := s.ID()
		if tamper {
			id = strings.Repeat("0", 64)
		}
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": id})
	}))
}

func TestRegister(t *testing.T) {
	srv := fakeFactory(t, false)
	defer srv.Close()
	f := &Factory{BaseURL: srv.URL}
	s := New([]string{"siderolabs/bnx2-bnx2x"}, nil)
	id, err := f.Register(context.Background(), s)
	want, _ := s.ID()
	if err != nil || id != want {
		t.Fatalf("register: %s %v", id, err)
	}
	bad := fakeFactory(t, true)
	defer bad.Close()
	if _, err := (&Factory{BaseURL: bad.URL}).Register(context.Background(), s); err == nil || !strings.Contains(err.Error(), "provisiond computed") {
		t.Errorf("mismatching ID: %v", err)
	}
	down := &Factory{BaseURL: "http://127.0.0.1:1"}
	if _, err := down.Register(context.Background(), s); err == nil || !strings.Contains(err.Error(), "cannot be reached") || !strings.Contains(err.Error(), "talos.factory_url") {
		t.Errorf("unreachable factory: %v", err)
	}
	if got := f.AssetURL("abc", "v1.9.5", "kernel-amd64"); got != srv.URL+"/image/abc/v1.9.5/kernel-amd64" {
		t.Errorf("asset URL %s", got)
	}
}

func TestValidVersion(t *testing.T) {
	for _, v := range []string{"v1.9.5", "v1.10.0-alpha.1"} {
		if ValidVersion(v) != nil {
			t.Errorf("%s rejected", v)
		}
	}
	for _, v := range []string{"1.9.5", "v1.9", "latest", "v1.9.5/../../x"} {
		if ValidVersion(v) == nil {
			t.Errorf("%s accepted", v)
		}
	}
}

// A name the factory does not list is an error that names it and the
// nearest official names: the factory itself takes any name, and a Talos
// booted without its NIC's firmware never gets an address.
func TestCheckExtensions(t *testing.T) {
	official := []string{"siderolabs/amd-ucode", "siderolabs/bnx2-bnx2x", "siderolabs/intel-ucode", "siderolabs/iscsi-tools"}
	if err := CheckExtensions([]string{"siderolabs/bnx2-bnx2x", "siderolabs/intel-ucode"}, official, "v1.9.5"); err != nil {
		t.Errorf("official names: %v", err)
	}
	err := CheckExtensions([]string{"siderolabs/bnx-bnx2x", "siderolabs/intel-ucod", "acme/nothing-like-it"}, official, "v1.9.5")
	for _, want := range []string{
		"Talos v1.9.5 has no official extension siderolabs/bnx-bnx2x (did you mean siderolabs/bnx2-bnx2x?)",
		"no official extension siderolabs/intel-ucod (did you mean siderolabs/intel-ucode",
		"no official extension acme/nothing-like-it: fix talos.extensions",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("unknown names: %v, want %q", err, want)
		}
	}
	if d := editDistance("bnx2", "bnx2x"); d != 1 {
		t.Errorf("editDistance(bnx2, bnx2x) = %d", d)
	}
}

// The Image Factory's own published vector: a schematic with only the
// extra kernel arguments noapic and nolapic has this ID (the factory's
// schematic tests; README: well-known IDs).
func TestSchematicIDFactoryVector(t *testing.T) {
	id, err := New(nil, []string{"noapic", "nolapic"}).ID()
	if err != nil || id != "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c" {
		t.Errorf("noapic nolapic: %s %v", id, err)
	}
	// Order is part of the schematic: the same arguments the other way
	// round are another schematic.
	if other, _ := New(nil, []string{"nolapic", "noapic"}).ID(); other == id {
		t.Error("reordered kernel arguments gave the same ID")
	}
}
