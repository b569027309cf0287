package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/slurm"
)

type powerRec struct {
	mu    sync.Mutex
	calls []string
}

func (p *powerRec) PXENext(_ context.Context, m string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, m+" pxe")
	return nil
}

func (p *powerRec) Power(_ context.Context, m, action string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, m+" "+action)
	return "off", nil
}

type secretMap struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *secretMap) SetSecret(name, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = value
	return nil
}
func (s *secretMap) Secrets() ([]inventory.SecretInfo, error) { return nil, nil }
func (s *secretMap) DeleteSecret(name string) error           { return nil }
func (s *secretMap) get(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[name]
}

// The Slurm token opens Slurm's three power saving calls, for Slurm
// machines only, and nothing else: no other change, no reads, no secrets,
// no new token. The API token opens them too.
func TestSlurmTokenScope(t *testing.T) {
	st, err := inventory.Open(filepath.Join(t.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, m := range []inventory.Machine{
		{Name: "BLD-003", MACs: []string{"52:54:00:00:30:03"}, Profile: "slurm", Hostname: "node-003"},
		{Name: "BLD-006", MACs: []string{"52:54:00:00:30:06"}, Profile: "talos", Hostname: "node-006"},
	} {
		if _, err := st.PutMachine(m); err != nil {
			t.Fatal(err)
		}
	}
	pw := &powerRec{}
	ctl := slurm.New(slurm.Config{}, st, pw, events.SinkFunc(func(events.Event) {}), nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ctl.Run(ctx, nil)
	sec := &secretMap{m: map[string]string{}}
	s := &Server{Store: st, Secrets: sec, Slurm: ctl, Token: "admin-s3cret", ReadAccess: "token", Log: slog.New(slog.DiscardHandler),
		SlurmToken: func() string { return sec.get(SlurmTokenSecret) }}
	mux := http.NewServeMux()
	s.Register(mux)
	call := func(method, path, token, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = "192.0.2.6:40000"
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	// Before a Slurm token is made, an empty one opens nothing.
	if w := call("POST", "/api/v1/slurm/resume", "", `{"nodes":"node-003"}`); w.Code != 401 {
		t.Fatalf("resume without a token: %d %s", w.Code, w.Body)
	}
	w := call("POST", "/api/v1/slurm/token", "admin-s3cret", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"token": "slurm-`) {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	tok := sec.get(SlurmTokenSecret)
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"POST", "/api/v1/slurm/resume", tok, `{"nodes":"node-003"}`, 200},
		{"POST", "/api/v1/slurm/suspend", tok, `{"nodes":"node-003"}`, 200},
		{"POST", "/api/v1/slurm/resume-failed", tok, `{"nodes":"node-003"}`, 200},
		{"POST", "/api/v1/slurm/resume", "admin-s3cret", `{"nodes":"node-003"}`, 200},
		{"POST", "/api/v1/slurm/resume", "wrong", `{"nodes":"node-003"}`, 401},
		// A machine on another profile is refused by name, untouched.
		{"POST", "/api/v1/slurm/resume", tok, `{"nodes":"node-006"}`, 422},
		{"POST", "/api/v1/slurm/suspend", tok, `{"nodes":"BLD-006"}`, 422},
		{"POST", "/api/v1/slurm/resume", tok, `{"nodes":"node-[003"}`, 400},
		// Nothing else opens to it.
		{"POST", "/api/v1/machines/BLD-006/power", tok, `{"action":"off"}`, 401},
		{"POST", "/api/v1/machines/BLD-003/power", tok, `{"action":"off"}`, 401},
		{"PUT", "/api/v1/machines/BLD-006", tok, `{"name":"BLD-006","profile":"slurm"}`, 401},
		{"POST", "/api/v1/machines/BLD-006/assign", tok, `{"profile":"slurm"}`, 401},
		{"GET", "/api/v1/secrets", tok, "", 401},
		{"GET", "/api/v1/machines", tok, "", 401},
		{"PUT", "/api/v1/secrets/munge-key", tok, "x", 401},
		{"POST", "/api/v1/slurm/token", tok, "", 401},
	} {
		if w := call(c.method, c.path, c.token, c.body); w.Code != c.want {
			t.Errorf("%s %s %s with %.6s…: %d, want %d: %s", c.method, c.path, c.body, c.token, w.Code, c.want, w.Body)
		}
	}
	if w := call("POST", "/api/v1/slurm/resume", tok, `{"nodes":"node-006"}`); !strings.Contains(w.Body.String(), `node-006 (machine BLD-006 boots profile \"talos\", not slurm)`) {
		t.Errorf("refusal does not name the node: %s", w.Body)
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	for _, c := range pw.calls {
		if strings.HasPrefix(c, "BLD-006") {
			t.Errorf("the talos machine was touched: %v", pw.calls)
		}
	}
}
