package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "provisiond.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsWork(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.HTTPPort(); p != 8080 {
		t.Errorf("port %d", p)
	}
	if c.AssetDir() != "/var/lib/provisiond/assets" {
		t.Errorf("assets %s", c.AssetDir())
	}
}

func TestLoad(t *testing.T) {
	c, err := Load(write(t, "interfaces: [eno1, eno2]\nadvertise: 192.0.2.2\nhttp:\n  listen: 192.0.2.2:9000\nboot:\n  uefi_x64: snponly.efi\n  chain_ipxe: false\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Interfaces) != 2 || c.Advertise != "192.0.2.2" || c.Boot.UEFIx64 != "snponly.efi" || c.Boot.ChainIPXE != "never" || c.Boot.BIOS != "undionly.kpxe" {
		t.Errorf("loaded %+v", c)
	}
	if p, _ := c.HTTPPort(); p != 9000 {
		t.Errorf("port %d", p)
	}
	if c, err := Load(write(t, ""), true); err != nil || c.DataDir != "/var/lib/provisiond" {
		t.Errorf("empty file: %v", err)
	}
	if _, err := Load("/nonexistent/provisiond.yaml", false); err != nil {
		t.Errorf("missing default file must mean defaults: %v", err)
	}
	if _, err := Load("/nonexistent/provisiond.yaml", true); err == nil {
		t.Error("a missing file named explicitly must be an error")
	}
	// chain_ipxe was a boolean: true reads as always; the default is auto;
	// anything else is refused with the values it takes.
	for in, want := range map[string]ChainMode{"true": "always", "Always": "always", "never": "never"} {
		if c, err := Load(write(t, "boot:\n  chain_ipxe: "+in+"\n"), true); err != nil || c.Boot.ChainIPXE != want {
			t.Errorf("chain_ipxe: %s: %q, %v", in, c.Boot.ChainIPXE, err)
		}
	}
	if Default().Boot.ChainIPXE != "auto" {
		t.Errorf("default chain_ipxe %q", Default().Boot.ChainIPXE)
	}
	if c, err := Load(write(t, "boot:\n  chain_ipxe: sometimes\n"), true); err != nil {
		t.Error(err)
	} else if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "auto, always, never") {
		t.Errorf("chain_ipxe: sometimes: %v", err)
	}
	if _, err := Load(write(t, "intefaces: [eno1]\n"), true); err == nil || !strings.Contains(err.Error(), "intefaces") {
		t.Errorf("typo: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.DataDir = "" }, "data_dir"},
		{func(c *Config) { c.Advertise = "not-an-ip" }, "advertise"},
		{func(c *Config) { c.HTTP.Listen = "8080" }, "http.listen"},
		{func(c *Config) { c.TFTP.MaxBlockSize = 100 }, "max_block_size"},
		{func(c *Config) { c.HTTP.MaxAssetStreams = -1 }, "http.max_asset_streams"},
		{func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{func(c *Config) { c.Boot.DefaultProfile = "" }, "default_profile"},
		{func(c *Config) { c.Store = "postgres" }, "store"},
		{func(c *Config) { c.Store = "etcd" }, "etcd.endpoints is empty"},
		{func(c *Config) { c.Store, c.Etcd.Endpoints = "etcd", []string{"192.0.2.11:2379"} }, "not an http:// or https:// URL"},
		{func(c *Config) {
			c.Store, c.Etcd.Endpoints, c.Etcd.Prefix = "etcd", []string{"https://192.0.2.11:2379"}, "provisiond"
		}, "etcd.prefix"},
		{func(c *Config) {
			c.Store, c.Etcd.Endpoints, c.Etcd.CertFile = "etcd", []string{"https://192.0.2.11:2379"}, "/etc/provisiond/etcd.crt"
		}, "go together"},
		{func(c *Config) {
			c.Store, c.Etcd.Endpoints, c.Etcd.Timeout = "etcd", []string{"https://192.0.2.11:2379"}, "0s"
		}, "etcd.timeout"},
	} {
		c := Default()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error about %s, got %v", tc.want, err)
		}
	}
}
