package oa

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/testmod"
)

// bmclibV1 holds recorded answers of real c7000 Onboard Administrators in
// its tests (two OA firmware versions, BL460c Gen8 and Gen9 blades). They
// are read from the Go module cache at test time, never copied here.
const bmclibV1 = "github.com/bmc-toolbox/bmclib@v0.5.7"

// recorded returns every answer the module's test file gives for path
// (the string literals of the map entries keyed path).
func recorded(t *testing.T, file, path string) []string {
	t.Helper()
	dir := testmod.Dir(t, bmclibV1, "GONOSUMDB=github.com/bmc-toolbox")
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var answers []string
	ast.Inspect(f, func(n ast.Node) bool {
		kv, ok := n.(*ast.KeyValueExpr)
		if !ok {
			return true
		}
		if k, ok := kv.Key.(*ast.BasicLit); !ok || k.Value != strconv.Quote(path) {
			return true
		}
		if call, ok := kv.Value.(*ast.CallExpr); ok && len(call.Args) == 1 {
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					answers = append(answers, s)
				}
			}
		}
		return true
	})
	if len(answers) == 0 {
		t.Fatalf("%s in %s has no recorded answer for %s", file, bmclibV1, path)
	}
	return answers
}

// A real OA's /xmldata (firmware 4.70, seven blades): the enclosure, the
// bays, serials trimmed of the OA's padding, both UUID forms, the port
// map's MACs.
func TestRecordedXMLData(t *testing.T) {
	e, err := ParseXMLData(strings.NewReader(recorded(t, "providers/hp/c7000/c7000_test.go", "/xmldata")[0]))
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "spare-cz372137h3" || e.Serial != "CZ372137H3" || e.PartNumber != "681844-B21" || e.PowerCapacity != 5300 {
		t.Errorf("enclosure %+v", e)
	}
	var bays, gen8 []int
	for _, b := range e.Blades {
		bays = append(bays, b.Bay)
		if b.Product == "ProLiant BL460c Gen8" {
			gen8 = append(gen8, b.Bay)
		}
	}
	if len(e.Blades) != 7 || len(gen8) != 3 {
		t.Fatalf("bays %v, Gen8 in %v", bays, gen8)
	}
	var b3 *Blade
	for i := range e.Blades {
		if e.Blades[i].Bay == 3 {
			b3 = &e.Blades[i]
		}
	}
	if b3 == nil {
		t.Fatalf("no blade in bay 3: %v", bays)
	}
	if b3.Serial != "CZ3403YLMV" || b3.PartNumber != "641016-B21" || b3.UUID != "641016CZ3403YLMV" || b3.ILOModel != "iLO4" || b3.ILOAddress != "" || b3.Power != "ON" || b3.Watts != 282 {
		t.Errorf("bay 3: %+v", b3)
	}
	// cUUID 30313436-3631-5A43-... is the ASCII of 641016CZ... with its
	// first three groups stored little-endian.
	if got := strings.Join(b3.UUIDs(), " "); got != "30313436-3631-5a43-3334-3033594c4d56 36343130-3136-435a-3334-3033594c4d56" {
		t.Errorf("bay 3 UUIDs: %s", got)
	}
	var macs []string
	for _, n := range b3.NICs {
		macs = append(macs, n.MAC)
	}
	if strings.Join(macs, " ") != "9c:b6:54:88:fc:b0 9c:b6:54:88:fc:b4" || b3.NICs[0].Mezz != 9 || !strings.Contains(b3.NICs[0].Device, "554FLB") {
		t.Errorf("bay 3 NICs: %+v", b3.NICs)
	}
	if len(e.Managers) != 2 || len(e.Interconnects) == 0 {
		t.Errorf("managers %+v, interconnects %d", e.Managers, len(e.Interconnects))
	}
}

// The other recording (firmware 4.90, one Gen9 blade with its iLO on the
// network): the active and the standby OA with their addresses; an iLO's
// xmldata is not an OA's.
func TestRecordedXMLDataManagers(t *testing.T) {
	answers := recorded(t, "discover/discover_test.go", "/xmldata")
	var oa *Enclosure
	ilo := 0
	for _, a := range answers {
		e, err := ParseXMLData(strings.NewReader(a))
		if err != nil {
			ilo++
			continue
		}
		oa = e
	}
	if oa == nil || ilo == 0 {
		t.Fatalf("want one OA and an iLO among %d recordings: OA %v, refused %d", len(answers), oa != nil, ilo)
	}
	if len(oa.Managers) != 2 || oa.Managers[0].Role != "ACTIVE" || oa.Managers[0].Address != "10.213.34.4" || oa.Managers[0].Firmware != "4.90" ||
		oa.Managers[1].Role != "STANDBY" || oa.Managers[1].Address != "10.213.34.2" || oa.Managers[0].Serial != "OB51CP6651" {
		t.Errorf("managers %+v", oa.Managers)
	}
	if len(oa.Blades) != 1 || oa.Blades[0].Bay != 1 || oa.Blades[0].ILOAddress != "10.213.34.213" || oa.Blades[0].Serial != "CZ3632K2SR" ||
		len(oa.Blades[0].NICs) != 2 || oa.Blades[0].NICs[1].MAC != "5c:b9:01:c9:de:28" {
		t.Errorf("blades %+v", oa.Blades)
	}
}

// A real OA's answer to userLogIn gives the session key.
func TestRecordedLogin(t *testing.T) {
	answer := recorded(t, "providers/hp/c7000/c7000_test.go", "/hpoa")[0]
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hpoa" {
			w.Write([]byte(answer))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	c := &Client{Addresses: []string{strings.TrimPrefix(srv.URL, "https://")}, User: "admin", Password: "pw"}
	s, err := c.Login(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.key != "a8223b7caad9ea0e" {
		t.Errorf("session key %q", s.key)
	}
}
