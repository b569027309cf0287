// Package redfishtest serves Redfish payloads recorded from real BMCs (the
// ones bmclib ships for its own tests, read from the Go module cache) over
// HTTPS as the BMC would: a session login, the recorded service root,
// systems and managers, and the two writes provisiond makes (a PATCH of
// the system's boot override, a ComputerSystem.Reset action, which changes
// the power state served afterwards).
package redfishtest

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Fixture names a recorded BMC: its system's path and the recorded file
// served for each path.
type Fixture struct {
	System string
	Files  map[string]string
	// Vendor, Model, Serial and BIOS are what the recording says.
	Vendor, Model, Serial, BIOS string
}

// DellR6515 is a Dell iDRAC 9 on a PowerEdge R6515 (no CPU, DIMM, drive or
// NIC collections in the recording).
var DellR6515 = Fixture{
	System: "/redfish/v1/Systems/System.Embedded.1",
	Files: map[string]string{
		"/redfish/v1":                                "dell/serviceroot.json",
		"/redfish/v1/Systems":                        "dell/systems.json",
		"/redfish/v1/Systems/System.Embedded.1":      "dell/system.embedded.1.json",
		"/redfish/v1/Managers":                       "dell/managers.json",
		"/redfish/v1/Managers/iDRAC.Embedded.1":      "dell/manager.idrac.embedded.1.json",
		"/redfish/v1/Systems/System.Embedded.1/Bios": "dell/bios.json",
	},
	Vendor: "Dell Inc.", Model: "PowerEdge R6515", Serial: "CNCMU0005400IJ", BIOS: "2.2.4",
}

// SupermicroX12 is a Supermicro X12 board on a SYS-510T.
var SupermicroX12 = Fixture{
	System: "/redfish/v1/Systems/1",
	Files: map[string]string{
		"/redfish/v1":            "smc_1.14.0_serviceroot.json",
		"/redfish/v1/Systems":    "smc_1.14.0_systems.json",
		"/redfish/v1/Systems/1":  "smc_1.14.0_systems_1.json",
		"/redfish/v1/Managers":   "managers.json",
		"/redfish/v1/Managers/1": "managers_1.json",
	},
	Vendor: "Supermicro", Model: "SYS-510T-MR-EI018", Serial: "S482931X2814218", BIOS: "2.0",
}

// FixturesDir is the directory of bmclib's recorded Redfish payloads in
// the module cache; the test is skipped when bmclib's module is not there.
func FixturesDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/bmc-toolbox/bmclib/v2").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("cannot find bmclib's module directory (go list -m: %v): its recorded Redfish payloads are needed", err)
	}
	return filepath.Join(dir, "internal", "redfishwrapper", "fixtures")
}

// BMC is a running recorded BMC.
type BMC struct {
	srv    *httptest.Server
	fx     Fixture
	dir    string
	t      testing.TB
	user   string
	pw     string
	token  string
	system string

	mu         sync.Mutex
	power      string
	resets     []string
	patches    []map[string]any
	accepted   []map[string]any
	loggedOut  bool
	rejectMode bool
}

// Start serves fixture fx (payloads from dir) over HTTPS on addr ("" for
// a free loopback port) for user and password; the test's cleanup stops it.
func Start(t testing.TB, dir string, fx Fixture, addr, user, password string) *BMC {
	t.Helper()
	b := &BMC{fx: fx, dir: dir, t: t, user: user, pw: password, system: fx.System, power: "On", token: "tok-" + strconv.Itoa(os.Getpid())}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("Redfish BMC on %s: %v", addr, err)
		}
		b.srv.Listener.Close()
		b.srv.Listener = l
	}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	return b
}

// Addr is where the BMC listens.
func (b *BMC) Addr() (host string, port int) {
	h, p, _ := net.SplitHostPort(b.srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return h, n
}

// RejectMode makes the BMC answer a boot PATCH naming
// BootSourceOverrideMode as iLO 4 does: 400, the property is unknown
// (iLO 4's Boot object has only the override target, enabled, the
// supported targets and the UEFI target).
func (b *BMC) RejectMode(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rejectMode = on
}

// Resets are the ComputerSystem.Reset types asked for, in order.
func (b *BMC) Resets() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.resets...)
}

// Patches are the PATCH bodies sent to the system; Accepted those taken.
func (b *BMC) Patches() (sent, accepted []map[string]any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]map[string]any(nil), b.patches...), append([]map[string]any(nil), b.accepted...)
}

// LoggedOut reports whether the session was deleted.
func (b *BMC) LoggedOut() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.loggedOut
}

func (b *BMC) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && p == "/redfish/v1/SessionService/Sessions":
		var login struct{ UserName, Password string }
		json.NewDecoder(r.Body).Decode(&login)
		if login.UserName != b.user || login.Password != b.pw {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"message":"Invalid credentials"}}`))
			return
		}
		w.Header().Set("X-Auth-Token", b.token)
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/1")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"@odata.id":"/redfish/v1/SessionService/Sessions/1","Id":"1","UserName":"` + b.user + `"}`))
		return
	case p == "/redfish/v1":
		// The service root is public.
	case r.Header.Get("X-Auth-Token") != b.token:
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodDelete && p == "/redfish/v1/SessionService/Sessions/1":
		b.loggedOut = true
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPatch && p == b.system:
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		b.patches = append(b.patches, body)
		if boot, _ := body["Boot"].(map[string]any); b.rejectMode && boot["BootSourceOverrideMode"] != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":{"code":"iLO.0.10.ExtendedInfo","message":"See @Message.ExtendedInfo for more information.","@Message.ExtendedInfo":[{"MessageId":"Base.0.10.PropertyUnknown","MessageArgs":["BootSourceOverrideMode"]}]}}`))
			return
		}
		b.accepted = append(b.accepted, body)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && p == b.system+"/Actions/ComputerSystem.Reset":
		var body struct{ ResetType string }
		json.NewDecoder(r.Body).Decode(&body)
		b.resets = append(b.resets, body.ResetType)
		switch body.ResetType {
		case "On", "ForceRestart", "PowerCycle":
			b.power = "On"
		case "ForceOff", "GracefulShutdown":
			b.power = "Off"
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet:
		name, ok := b.fx.Files[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		raw, err := os.ReadFile(filepath.Join(b.dir, name))
		if err != nil {
			b.t.Errorf("fixture %s: %v", name, err)
			http.NotFound(w, r)
			return
		}
		if p == b.system {
			var doc map[string]any
			json.Unmarshal(raw, &doc)
			doc["PowerState"] = b.power
			raw, _ = json.Marshal(doc)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(raw)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}
