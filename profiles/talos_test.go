package profiles_test

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/testmod"
	"github.com/provisiond/provisiond/profiles"
)

// talosMachinery is the Talos module whose own test documents the join
// config is checked against (read from the Go module cache, not vendored).
const talosMachinery = "github.com/siderolabs/talos/pkg/machinery@v1.9.5"

// talosTestDocuments downloads Talos's machinery module into the module
// cache and returns its test documents by kind: the SideroLinkConfig,
// EventSinkConfig and KmsgLogConfig as Talos's own tests write them.
func talosTestDocuments(t *testing.T) map[string]map[string]any {
	t.Helper()
	dir := testmod.Dir(t, talosMachinery)
	docs := map[string]map[string]any{}
	for _, f := range []string{"config/types/siderolink/testdata/document.yaml", "config/types/runtime/testdata/eventsink.yaml", "config/types/runtime/testdata/kmsglog.yaml"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range decodeAll(t, raw) {
			docs[d["kind"].(string)] = d
		}
	}
	return docs
}

func decodeAll(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%v in:\n%s", err, raw)
		}
		out = append(out, d)
	}
}

// The talos profile's join config is the three documents Omni's bare-metal
// provider serves (SideroLinkConfig, EventSinkConfig, KmsgLogConfig named
// omni-kmsg), with exactly the fields Talos's own test documents use, and
// values Talos accepts: an https:// or grpc:// API URL with no path but "/",
// the join token and grpc_tunnel=true as Omni spells them.
func TestTalosJoinConfigIsWhatTalosReads(t *testing.T) {
	want := talosTestDocuments(t)
	set, err := profile.Load(profiles.FS, "")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set.Get("talos")
	if !ok {
		t.Fatal("no talos profile")
	}
	for _, tc := range []struct{ api, tunnel, wantQuery string }{
		{"https://omni.example.com:8090/", "false", "jointoken=tok-123"},
		{"grpc://omni.lan:8090", "true", "jointoken=tok-123&grpc_tunnel=true"},
	} {
		raw, err := p.RenderConfig(profile.Data{Name: "ODEN", MAC: "52:54:00:00:00:0a", Profile: "talos",
			Params: map[string]string{"omni_api": tc.api, "omni_grpc_tunnel": tc.tunnel},
			Secret: func(name string) (string, error) {
				if name != "omni-join-token" {
					t.Errorf("secret %q asked for", name)
				}
				return "tok-123", nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		docs := decodeAll(t, raw)
		var kinds []string
		for _, d := range docs {
			kind, _ := d["kind"].(string)
			kinds = append(kinds, kind)
			w, ok := want[kind]
			if !ok {
				t.Errorf("document kind %q is not one of Talos's (%v)", kind, want)
				continue
			}
			if got, exp := slices.Sorted(maps.Keys(d)), slices.Sorted(maps.Keys(w)); !slices.Equal(got, exp) {
				t.Errorf("%s has fields %v, Talos's test document %v", kind, got, exp)
			}
			if d["apiVersion"] != w["apiVersion"] {
				t.Errorf("%s apiVersion %v, want %v", kind, d["apiVersion"], w["apiVersion"])
			}
		}
		if !slices.Equal(kinds, []string{"SideroLinkConfig", "EventSinkConfig", "KmsgLogConfig"}) {
			t.Fatalf("documents %v\n%s", kinds, raw)
		}
		api, err := url.Parse(docs[0]["apiUrl"].(string))
		if err != nil || (api.Scheme != "https" && api.Scheme != "grpc") || (api.Path != "" && api.Path != "/") || api.RawQuery != tc.wantQuery {
			t.Errorf("apiUrl %q (%v): Talos wants https:// or grpc://, no path, and the query %q", docs[0]["apiUrl"], err, tc.wantQuery)
		}
		if _, _, err := net.SplitHostPort(docs[1]["endpoint"].(string)); err != nil || docs[1]["endpoint"] != "[fdae:41e4:649b:9303::1]:8090" {
			t.Errorf("event sink endpoint %q: %v", docs[1]["endpoint"], err)
		}
		if u, err := url.Parse(docs[2]["url"].(string)); err != nil || u.Scheme != "tcp" || u.Host != "[fdae:41e4:649b:9303::1]:8092" || docs[2]["name"] != "omni-kmsg" {
			t.Errorf("kmsg log %v %v: %v", docs[2]["name"], docs[2]["url"], err)
		}
	}
}
