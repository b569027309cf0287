package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
)

// TestReadGuard checks the read policy: reads are open on loopback and
// need the token from elsewhere under "local"; "token" asks everyone,
// "open" nobody; other methods pass to the route (which checks the token
// itself).
func TestReadGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	cases := []struct {
		access, method, from, token string
		want                        int
	}{
		{"local", "GET", "127.0.0.1:5000", "", 200},
		{"local", "GET", "[::1]:5000", "", 200},
		{"local", "GET", "192.0.2.50:5000", "", 401},
		{"local", "HEAD", "192.0.2.50:5000", "", 401},
		{"local", "GET", "192.0.2.50:5000", "wrong", 401},
		{"local", "GET", "192.0.2.50:5000", "s3cret", 200},
		{"local", "POST", "192.0.2.50:5000", "", 200},
		{"token", "GET", "127.0.0.1:5000", "", 401},
		{"token", "GET", "127.0.0.1:5000", "s3cret", 200},
		{"open", "GET", "192.0.2.50:5000", "", 200},
		{"local", "GET", "garbage", "", 401},
	}
	for _, c := range cases {
		s := &Server{Token: "s3cret", ReadAccess: c.access}
		r := httptest.NewRequest(c.method, "/api/v1/machines", nil)
		r.RemoteAddr = c.from
		if c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		w := httptest.NewRecorder()
		s.ReadGuard(ok).ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s %s from %s token %q: %d, want %d", c.access, c.method, c.from, c.token, w.Code, c.want)
		}
	}
}

// Go's profiler is served to token holders only, even on loopback.
func TestProfilerNeedsToken(t *testing.T) {
	s := &Server{Token: "s3cret", ReadAccess: "open"}
	mux := http.NewServeMux()
	s.Register(mux)
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/debug/pprof/cmdline", "", 401},
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/cmdline", "s3cret", 200},
		{"/debug/pprof/goroutine?debug=1", "s3cret", 200},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		r.RemoteAddr = "127.0.0.1:5000"
		if c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("GET %s with token %q: %d, want %d", c.path, c.token, w.Code, c.want)
		}
	}
}

// GET /api/v1/machines pages through the machines (a Link to the next
// page), keeps the fields asked for, refuses a bad limit, and still names a
// machine asked for by name that does not exist.
func TestListMachinesPages(t *testing.T) {
	st, err := inventory.Open(filepath.Join(t.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range 3 {
		if _, err := st.PutMachine(inventory.Machine{Name: fmt.Sprintf("BLD-%03d", i+1), MACs: []string{fmt.Sprintf("52:54:00:00:20:%02x", i)}, Profile: "local"}); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Store: st, ReadAccess: "open", Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	s.Register(mux)
	get := func(target string) (*httptest.ResponseRecorder, []inventory.Machine) {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		var ms []inventory.Machine
		if w.Code == 200 {
			if err := json.Unmarshal(w.Body.Bytes(), &ms); err != nil {
				t.Fatalf("%s: %v\n%s", target, err, w.Body)
			}
		}
		return w, ms
	}
	w, ms := get("/api/v1/machines?limit=2&fields=name,profile")
	if len(ms) != 2 || ms[1].Name != "BLD-002" || ms[1].Profile != "local" || ms[1].MACs != nil {
		t.Errorf("first page: %+v", ms)
	}
	link := w.Header().Get("Link")
	if link != `</api/v1/machines?after=BLD-002&fields=name%2Cprofile&limit=2>; rel="next"` {
		t.Fatalf("Link %q", link)
	}
	w, ms = get(strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`))
	if len(ms) != 1 || ms[0].Name != "BLD-003" || w.Header().Get("Link") != "" {
		t.Errorf("last page: %+v, Link %q", ms, w.Header().Get("Link"))
	}
	if _, ms = get("/api/v1/machines"); len(ms) != 3 || len(ms[0].MACs) != 1 {
		t.Errorf("whole list: %+v", ms)
	}
	for target, want := range map[string]int{"/api/v1/machines?limit=0": 400, "/api/v1/machines?limit=x": 400, "/api/v1/machines?machine=NOPE": 404} {
		if w, _ := get(target); w.Code != want {
			t.Errorf("%s: %d, want %d: %s", target, w.Code, want, w.Body)
		}
	}
}
