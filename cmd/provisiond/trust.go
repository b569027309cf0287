package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/certs"
)

// clientConfig is the CLI's file of daemons it trusts, in the spirit of a
// kubeconfig: each server's URL, its pinned certificate and, optionally,
// where its token is.
type clientConfig struct {
	Servers []trustedServer `yaml:"servers"`
}

type trustedServer struct {
	Server      string `yaml:"server"`
	Fingerprint string `yaml:"fingerprint"`
	TokenFile   string `yaml:"token_file,omitempty"`
}

// defaultClientConfig is $XDG_CONFIG_HOME/provisiond/client.yaml, else
// ~/.config/provisiond/client.yaml.
func defaultClientConfig(e env) string {
	if p := e.get("PROVISIOND_CLIENT_CONFIG"); p != "" {
		return p
	}
	dir := e.get("XDG_CONFIG_HOME")
	if dir == "" {
		home := cmp.Or(e.get("HOME"), "/root")
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "provisiond", "client.yaml")
}

func loadClientConfig(path string) (*clientConfig, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &clientConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the client config %s: %w", path, err)
	}
	var c clientConfig
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("client config %s: %w (fix or remove it)", path, err)
	}
	return &c, nil
}

func (c *clientConfig) find(server string) *trustedServer {
	for i := range c.Servers {
		if strings.TrimRight(c.Servers[i].Server, "/") == strings.TrimRight(server, "/") {
			return &c.Servers[i]
		}
	}
	return nil
}

// pin records server's fingerprint in the file at path (0600), replacing
// an older pin.
func pin(path, server, fingerprint string) error {
	c, err := loadClientConfig(path)
	if err != nil {
		return err
	}
	if s := c.find(server); s != nil {
		s.Fingerprint = fingerprint
	} else {
		c.Servers = append(c.Servers, trustedServer{Server: strings.TrimRight(server, "/"), Fingerprint: fingerprint})
	}
	raw, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	out := append([]byte("# provisiond CLI: the control planes it trusts, by certificate fingerprint (provisiond trust --help)\n"), raw...)
	return os.WriteFile(path, out, 0o600)
}

// loopbackServer reports whether server's host is this machine.
func loopbackServer(server string) bool {
	u, err := url.Parse(server)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// client builds an API client for the control plane. The certificate is
// pinned by, in this order: --fingerprint; on this host, the daemon's own
// certificate next to the token file the CLI reads (the data directory is
// trusted with the token already, and outlives any pin of it); the client
// config's entry for the server; or else trust on first use, recorded in
// the client config.
func (cf *clientFlags) client(e env) *api.Client {
	c := &api.Client{Server: cf.server, Token: cf.token, Insecure: cf.insecure,
		Warn: func(w string) { fmt.Fprintln(e.stderr, "provisiond: warning:", w) }}
	cfgPath := cmp.Or(cf.clientConfig, defaultClientConfig(e))
	conf, err := loadClientConfig(cfgPath)
	if err != nil {
		fmt.Fprintln(e.stderr, "provisiond: warning:", err)
		conf = &clientConfig{}
	}
	entry := conf.find(cf.server)
	tokenFile := cf.tokenFile
	if entry != nil && entry.TokenFile != "" && !cf.tokenFileSet {
		tokenFile = entry.TokenFile
	}
	if c.Token == "" && tokenFile != "" {
		if raw, err := os.ReadFile(tokenFile); err == nil {
			c.Token = strings.TrimSpace(string(raw))
		}
	}
	local := localCert(cf.server, tokenFile)
	switch {
	case cf.insecure:
		fmt.Fprintln(e.stderr, "provisiond: warning: --insecure: the control plane's certificate is not checked")
	case cf.fingerprint != "":
		fp, err := certs.NormalizeFingerprint(cf.fingerprint)
		if err != nil {
			fp = "sha256:invalid" // refuses every server; the error names the flag below
			fmt.Fprintln(e.stderr, "provisiond: --fingerprint:", err)
		}
		c.Fingerprint = fp
	case local != "":
		c.Fingerprint = local
	case entry != nil && entry.Fingerprint != "":
		c.Fingerprint = entry.Fingerprint
	default:
		if strings.HasPrefix(cf.server, "https://") {
			c.FirstUse = func(fp string) {
				if err := pin(cfgPath, cf.server, fp); err != nil {
					fmt.Fprintf(e.stderr, "provisiond: trusting %s (first use) but could not record it: %v\n", cf.server, err)
					return
				}
				fmt.Fprintf(e.stderr, "provisiond: trusting %s on first use: certificate %s (recorded in %s; compare it with the daemon's log or provisiond status on its host)\n", cf.server, fp, cfgPath)
			}
		}
	}
	return c
}

// localCert is the fingerprint of the daemon's certificate next to
// tokenFile when server is on this host and the file is readable, else "".
func localCert(server, tokenFile string) string {
	if !loopbackServer(server) || tokenFile == "" {
		return ""
	}
	fp, err := certs.FileFingerprint(filepath.Join(filepath.Dir(tokenFile), certs.SelfSignedCert))
	if err != nil {
		return ""
	}
	return fp
}

func newTrust(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "trust",
		Short: "Pin the control plane's certificate for --server (first time, or after it was replaced)",
		Long: "Connects to --server, shows the certificate's SHA-256 fingerprint and records it in the client config\n" +
			"(PROVISIOND_CLIENT_CONFIG, default ~/.config/provisiond/client.yaml), replacing an older pin. With\n" +
			"--fingerprint it records the certificate only if it is that one: compare with the daemon's log line\n" +
			"'provisiond serving … fingerprint=…' or 'openssl x509 -noout -fingerprint -sha256 -in /var/lib/provisiond/tls.crt'.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			want := ""
			if cf.fingerprint != "" {
				fp, err := certs.NormalizeFingerprint(cf.fingerprint)
				if err != nil {
					return fmt.Errorf("--fingerprint: %w", err)
				}
				want = fp
			}
			seen := ""
			c := &api.Client{Server: cf.server, Fingerprint: want, FirstUse: func(fp string) { seen = fp }}
			if _, err := c.Health(cmd.Context()); err != nil {
				return err
			}
			if want != "" {
				seen = want
			}
			if seen == "" {
				return fmt.Errorf("%s presented no certificate: the control plane is https://HOST:8443", cf.server)
			}
			cfgPath := cmp.Or(cf.clientConfig, defaultClientConfig(e))
			old := ""
			if conf, err := loadClientConfig(cfgPath); err == nil {
				if s := conf.find(cf.server); s != nil {
					old = s.Fingerprint
				}
			}
			if err := pin(cfgPath, cf.server, seen); err != nil {
				return err
			}
			switch {
			case old == seen:
				fmt.Fprintf(e.stdout, "%s: certificate %s (already trusted)\n", cf.server, seen)
			case old != "":
				fmt.Fprintf(e.stdout, "%s: certificate %s now trusted (was %s); recorded in %s\n", cf.server, seen, old, cfgPath)
			default:
				fmt.Fprintf(e.stdout, "%s: certificate %s trusted; recorded in %s\n", cf.server, seen, cfgPath)
			}
			return nil
		},
	}
}
