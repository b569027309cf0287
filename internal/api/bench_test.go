package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/inventory/inventorytest"
)

// BenchmarkListMachines10k is GET /api/v1/machines (provisiond machine
// list) over 10,000 machines: read from the database, filtered by label,
// encoded as JSON.
func BenchmarkListMachines10k(b *testing.B) {
	st, err := inventory.Open(filepath.Join(b.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Import(&inventory.Document{Version: 1, Machines: inventorytest.Fleet(10000)}, true); err != nil {
		b.Fatal(err)
	}
	s := &Server{Store: st, ReadAccess: "open", Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	s.Register(mux)
	for _, q := range []string{"", "?label=state=ready", "?limit=100", "?fields=name,profile,macs"} {
		b.Run("query="+q, func(b *testing.B) {
			for b.Loop() {
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/machines"+q, nil))
				if w.Code != 200 || w.Body.Len() < 1000 {
					b.Fatalf("%d: %.200s", w.Code, w.Body.String())
				}
				io.Copy(io.Discard, w.Body)
			}
		})
	}
}
