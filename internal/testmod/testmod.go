// Package testmod fetches a Go module's source into the module cache for a
// test that reads public test data from it (recorded BMC and OA answers,
// upstream test documents): nothing is copied into this repository.
package testmod

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Dir downloads module@version (outside this module, so go.mod stays as
// it is) and returns its directory in the module cache. When it cannot be
// had the test is skipped saying why, or fails under CI (CI set), where the
// data must be there. env adds variables (GONOSUMDB for modules the
// checksum database does not know).
func Dir(t testing.TB, moduleVersion string, env ...string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", moduleVersion)
	cmd.Dir = t.TempDir()
	cmd.Env = append(append(os.Environ(), "GOFLAGS=-mod=mod"), env...)
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if err == nil || len(out) > 0 {
		if jerr := json.Unmarshal(out, &mod); jerr != nil && err == nil {
			err = jerr
		}
	}
	if err != nil || mod.Dir == "" {
		msg := moduleVersion + " is not in the module cache and cannot be downloaded (go mod download " + moduleVersion + "): " + strings.TrimSpace(mod.Error)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return mod.Dir
}
