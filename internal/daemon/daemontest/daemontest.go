// Package daemontest runs a real provisiond daemon in the test's process:
// its boot plane (HTTP) and control plane (HTTPS) on loopback ports,
// ProxyDHCP on loopback, no TFTP, a fresh data directory.
package daemontest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/pxe/pxetest"
	"github.com/provisiond/provisiond/profiles"
)

// Daemon is a running test daemon.
type Daemon struct {
	// URL is the control plane's base URL (https://127.0.0.1:PORT): API,
	// dashboard, metrics.
	URL string
	// BootURL is the boot plane's base URL (http://127.0.0.1:PORT):
	// scripts, assets, callbacks.
	BootURL string
	// Fingerprint is the control plane certificate's SHA-256.
	Fingerprint string
	// Config is the configuration it runs with.
	Config config.Config
	// TokenFile is the API token's file.
	TokenFile string
}

// Start runs a daemon until the test ends; adjust, when set, changes its
// configuration and options first.
func Start(t testing.TB, adjust func(*config.Config, *daemon.Options)) *Daemon {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	pxetest.Loopback(t, &cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan daemon.Addrs, 1)
	done := make(chan error, 1)
	opts := daemon.Options{Builtin: profiles.FS, Log: slog.New(slog.DiscardHandler), Ready: func(a daemon.Addrs) { ready <- a }}
	if adjust != nil {
		adjust(&cfg, &opts)
	}
	go func() {
		done <- daemon.Run(ctx, cfg, opts)
	}()
	var addr daemon.Addrs
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not start")
	}
	t.Cleanup(func() { cancel(); <-done })
	return &Daemon{URL: "https://" + addr.Control, BootURL: "http://" + addr.Boot, Fingerprint: addr.Fingerprint,
		Config: cfg, TokenFile: filepath.Join(cfg.DataDir, daemon.TokenFile)}
}

// PXE plays mac's PXE ROM asking the daemon's ProxyDHCP for its boot file:
// the machine's boot starts (its secrets may then be served to it).
func (d *Daemon) PXE(t testing.TB, mac string) {
	t.Helper()
	if !d.Config.DHCP.Enabled {
		t.Fatal("daemontest: the daemon's ProxyDHCP is off")
	}
	if err := pxetest.Request(d.Config.DHCP.ProxyPort, mac); err != nil {
		t.Fatal(err)
	}
}

// Boot is a whole boot of mac as far as iPXE goes: its PXE DHCP, then
// its script and every asset the script names.
func (d *Daemon) Boot(t testing.TB, mac string) {
	t.Helper()
	d.PXE(t, mac)
	if err := PlayIPXE(d.BootURL, mac); err != nil {
		t.Fatal(err)
	}
}

// Token returns the daemon's API token.
func (d *Daemon) Token(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile(d.TokenFile)
	if err != nil {
		t.Fatalf("reading the API token: %v", err)
	}
	return strings.TrimSpace(string(raw))
}

var assetURL = regexp.MustCompile(`http://[^\s/]+/assets/[^\s]+`)

// PlayIPXE does what iPXE does once the ROM has its address: fetch the
// machine's script from base (the daemon's URL) for mac, then every asset
// the script names.
func PlayIPXE(base, mac string) error {
	fetch := func(u string) (string, error) {
		resp, err := http.Get(u)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return string(raw), err
	}
	script, err := fetch(base + "/boot/" + mac + "/script?platform=pcbios")
	if err != nil {
		return err
	}
	for _, u := range assetURL.FindAllString(script, -1) {
		if _, err := fetch(u); err != nil {
			return err
		}
	}
	return nil
}

// WriteAssets puts a small kernel (vmlinuz) and initrd (initrd.img) in the
// daemon's assets directory, for the linux profile.
func (d *Daemon) WriteAssets(t testing.TB) {
	t.Helper()
	dir := d.Config.AssetDir()
	os.MkdirAll(dir, 0o755)
	for name, size := range map[string]int{"vmlinuz": 4096, "initrd.img": 8192} {
		if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte{'k'}, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Client returns an API client of the daemon that holds its token and
// pins its certificate.
func (d *Daemon) Client(t testing.TB) *api.Client {
	return &api.Client{Server: d.URL, Token: d.Token(t), Fingerprint: d.Fingerprint}
}

// SPKIHash is the base64 SHA-256 of the control plane certificate's
// public key, as Chromium's --ignore-certificate-errors-spki-list takes
// it: a browser trusts exactly this daemon's certificate.
func (d *Daemon) SPKIHash(t testing.TB) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(d.Config.DataDir, certs.SelfSignedCert))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		t.Fatal("the daemon's certificate is not PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// HTTP returns an HTTP client for the control plane that trusts exactly
// the daemon's certificate.
func (d *Daemon) HTTP() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(d.Fingerprint, nil)}}
}

// ImportHomelab imports examples/homelab.yaml (ASGARD's 16 blades, the
// rack servers, roles and spare parts) and returns the client it used.
func (d *Daemon) ImportHomelab(t testing.TB) *api.Client {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "examples", "homelab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := d.Client(t)
	if _, err := c.Import(context.Background(), doc, false, true); err != nil {
		t.Fatalf("importing the example homelab: %v", err)
	}
	return c
}
