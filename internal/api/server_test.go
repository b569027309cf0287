package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
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
