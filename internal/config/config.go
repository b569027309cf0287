// Package config holds provisiond's daemon configuration: one YAML file with
// working defaults. Only package main decides where the file comes from and
// which flags override it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/inventory"
)

// Config is the daemon configuration.
type Config struct {
	// Interfaces to serve DHCP and TFTP on. Empty means every interface
	// that is up, not loopback, and has an IPv4 address.
	Interfaces []string `yaml:"interfaces"`
	// Advertise is the IPv4 address given to clients for TFTP and HTTP.
	// Empty means the address of the interface a request came in on.
	Advertise string `yaml:"advertise"`
	// DataDir holds the bbolt database (mode 0600), the secret key, the
	// control plane's certificate and the asset cache.
	DataDir string `yaml:"data_dir"`
	// Store is where the inventory lives: "bbolt" (one file in DataDir,
	// the default) or "etcd" (an etcd cluster, shared by several
	// instances; see Etcd).
	Store string `yaml:"store"`
	// Etcd is the etcd cluster of store: etcd.
	Etcd Etcd `yaml:"etcd"`
	// Instance names this instance among those sharing an etcd store
	// (provisiond status lists them). Empty means the host's name.
	Instance string `yaml:"instance"`
	// IPXEDir holds the iPXE binaries served over TFTP and HTTP.
	IPXEDir string `yaml:"ipxe_dir"`
	// ProfilesDir, when set, holds profiles that override or add to the
	// built-in ones.
	ProfilesDir string `yaml:"profiles_dir"`
	// AssetsDir holds kernels and initrds served over HTTP under /assets/.
	// Empty means DataDir/assets.
	AssetsDir string `yaml:"assets_dir"`

	HTTP    HTTP    `yaml:"http"`
	Control Control `yaml:"control"`
	DHCP    DHCP    `yaml:"dhcp"`
	TFTP    TFTP    `yaml:"tftp"`
	Boot    Boot    `yaml:"boot"`
	Talos   Talos   `yaml:"talos"`
	Log     Log     `yaml:"log"`
	BMC     BMC     `yaml:"bmc"`

	Commission Commission `yaml:"commission"`
	// Slurm configures Slurm's power saving through provisiond.
	Slurm Slurm `yaml:"slurm"`

	// Roles are the role requirements audit and plan use (built in: the
	// homelab's table). A roles list here replaces the built-in list; roles
	// imported into the inventory take precedence over both, by name.
	Roles []inventory.Role `yaml:"roles"`
	// Models are figures per hardware model (sockets, DIMM slots, disk
	// bays, running power), matched by a substring of "vendor model". A
	// list here replaces the built-in one.
	Models []audit.Model `yaml:"models"`

	// MaxEventsPerMachine bounds each machine's timeline.
	MaxEventsPerMachine int `yaml:"max_events_per_machine"`
	// MaxDiscovered bounds the machines provisiond records on its own
	// (unknown MACs that PXE-boot); beyond it, unknown MACs still boot the
	// default profile but are not stored, and are counted.
	MaxDiscovered int `yaml:"max_discovered"`
}

// Etcd configures the etcd store.
type Etcd struct {
	// Endpoints are the cluster's client URLs, e.g.
	// https://192.0.2.11:2379.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is the deployment's key prefix: instances sharing one
	// inventory use the same one.
	Prefix string `yaml:"prefix"`
	// CAFile verifies the members' certificates; CertFile and KeyFile are
	// this instance's client certificate (PEM). Empty: no TLS, or the
	// system's roots for https endpoints.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Timeout bounds each request, e.g. "5s": a change is refused after
	// it when the cluster has no quorum.
	Timeout string `yaml:"timeout"`
}

// TimeoutDuration is etcd.timeout parsed (Validate checks it).
func (e Etcd) TimeoutDuration() time.Duration {
	d, _ := time.ParseDuration(e.Timeout)
	return d
}

// BMC configures how the daemon talks to management controllers.
type BMC struct {
	// Timeout bounds each BMC call (connect, power, boot device,
	// inventory), e.g. "20s".
	Timeout string `yaml:"timeout"`
	// MaxConcurrent bounds how many BMC operations run at once across all
	// machines (each IPMI call is an ipmitool process).
	MaxConcurrent int `yaml:"max_concurrent"`
	// IpmitoolPath is the ipmitool binary ("" finds it on PATH).
	IpmitoolPath string `yaml:"ipmitool_path"`
}

// BMCTimeout is the parsed BMC call timeout.
func (c *Config) BMCTimeout() time.Duration {
	d, _ := time.ParseDuration(c.BMC.Timeout)
	return d
}

// HTTP configures the HTTP server (boot scripts, assets, API).
type HTTP struct {
	// Listen is the address to listen on, e.g. ":8080".
	Listen string `yaml:"listen"`
	// ReadAccess says who may read the API and /metrics without the
	// token: "local" (clients on loopback; everyone else needs it),
	// "token" (nobody) or "open" (everybody). Changes always need the
	// token; boot endpoints are always open (firmware cannot log in).
	ReadAccess string `yaml:"read_access"`
	// MaxConnections bounds the HTTP connections open at once (boot
	// clients and API); more wait in the kernel's accept queue. The
	// default, 4096, with the kernel's queue of as many, holds a storm of
	// 5,000 machines booting at once: a connection that waits too long
	// in an overflowing queue is reset.
	MaxConnections int `yaml:"max_connections"`
	// Port is advertised to clients in boot URLs; it must match Listen.
	// Zero means the port of Listen.
	Port int `yaml:"port"`
	// MaxConnectionsPerSource bounds the connections one client address
	// holds open at once; more are closed at once and counted.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// RatePerSource bounds the boot plane requests one client address
	// makes per second (bursts of four times as many); more are answered
	// 429 and counted. A boot takes a handful. Zero means no bound.
	RatePerSource float64 `yaml:"rate_per_source"`
	// MaxAssetStreams bounds the kernels, initrds and images sent at once;
	// more downloads wait for a stream, in order (iPXE waits; the
	// firmware's TFTP transfers, which give up, get the cores meanwhile).
	// Zero means no bound.
	MaxAssetStreams int `yaml:"max_asset_streams"`
}

// Control configures the control plane: the API, the dashboard, /metrics,
// the profiler and backups, on a listener of its own with TLS. The boot
// plane (http.listen) serves only what firmware fetches.
type Control struct {
	// Listen is the control plane's address, e.g. ":8443".
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are a PEM certificate and its key. Empty means
	// a self-signed pair made on first start in the data directory
	// (tls.crt, tls.key); its fingerprint is in the log and in
	// provisiond status, and clients pin it.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Hosts are further names clients may use in the Host header (a DNS
	// name, a reverse proxy's name), besides localhost, this host's name
	// and its interfaces' addresses. Any other Host is refused (421), so
	// a web page cannot reach the daemon through a DNS name it controls.
	Hosts []string `yaml:"hosts"`
	// MaxConnections bounds the control plane's connections, apart from
	// the boot plane's.
	MaxConnections int `yaml:"max_connections"`
}

// DHCP configures the ProxyDHCP server.
type DHCP struct {
	// Enabled turns the ProxyDHCP server on.
	Enabled bool `yaml:"enabled"`
	// Port is the DHCP server port (67); only tests change it.
	Port int `yaml:"port"`
	// ProxyPort is the PXE boot-server port (4011).
	ProxyPort int `yaml:"proxy_port"`
}

// TFTP configures the TFTP server.
type TFTP struct {
	// Enabled turns the TFTP server on.
	Enabled bool `yaml:"enabled"`
	// Port is the TFTP port (69); only tests change it.
	Port int `yaml:"port"`
	// MaxBlockSize caps the negotiated blksize (RFC 2348).
	MaxBlockSize int `yaml:"max_block_size"`
	// MaxTransfers bounds the transfers in flight; up to thirty-two
	// times as many more (at most 4,096) wait for a slot, the rest are
	// answered "busy" and counted.
	MaxTransfers int `yaml:"max_transfers"`
}

// Boot configures boot decisions.
type Boot struct {
	// BIOS is the iPXE binary for legacy BIOS PXE ROMs.
	BIOS string `yaml:"bios"`
	// UEFIx64 is the iPXE binary for x86-64 UEFI: snponly.efi (iPXE on
	// the firmware's own network driver; 174 KB, starts in a third of
	// ipxe.efi's time) or ipxe.efi (iPXE's own drivers; 850 KB, too large
	// for some NICs' PXE buffers).
	UEFIx64 string `yaml:"uefi_x64"`
	// UEFIx86 is the iPXE binary for 32-bit x86 UEFI.
	UEFIx86 string `yaml:"uefi_x86"`
	// UEFIARM64 is the iPXE binary for ARM64 UEFI.
	UEFIARM64 string `yaml:"uefi_arm64"`
	// ChainIPXE says when a NIC's iPXE option ROM is chained into
	// provisiond's own iPXE binary (over TFTP) before it gets its script:
	// auto (only a ROM that lacks a feature the scripts use), always (every
	// machine runs the same iPXE) or never (only a ROM without HTTP). The
	// booleans of older configs read as always (true) and never (false).
	ChainIPXE ChainMode `yaml:"chain_ipxe"`
	// IPv6RA ends iPXE's 15-s wait for IPv6 on a network without an IPv6
	// router: a machine provisiond is booting whose router solicitation
	// no router answers within a second gets, unicast, an advertisement
	// of no router (lifetime 0, no prefix). Never sent on a link where a
	// router advertised within the hour. Needs CAP_NET_RAW.
	IPv6RA bool `yaml:"ipv6_ra"`
	// DefaultProfile is served to unknown machines and to machines without
	// a profile.
	DefaultProfile string `yaml:"default_profile"`
	// DefaultParams are parameters every profile sees unless the machine
	// overrides them.
	DefaultParams map[string]string `yaml:"default_params"`
	// SecretWindow is how long after a machine's boot starts (its PXE
	// DHCP request, or a BMC power-on or boot-device action provisiond
	// took) it may receive its secrets (a munge key, Omni's join token).
	SecretWindow string `yaml:"secret_window"`
	// TrustedSources are routed networks (CIDR) whose boot requests are
	// taken to come from the MAC they name, because no neighbour entry
	// can tell (the far side of a DHCP relay). On the served links the
	// kernel's neighbour table decides.
	TrustedSources []string `yaml:"trusted_sources"`
}

// SecretWindowDuration is boot.secret_window parsed (Validate checks it).
func (b Boot) SecretWindowDuration() time.Duration {
	d, _ := time.ParseDuration(b.SecretWindow)
	return d
}

// TrustedPrefixes is boot.trusted_sources parsed (Validate checks it).
func (b Boot) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range b.TrustedSources {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Talos configures the talos profile's Image Factory assets.
type Talos struct {
	// FactoryURL is the Image Factory (or a mirror of it).
	FactoryURL string `yaml:"factory_url"`
	// Version is the Talos version machines boot unless their talos_version
	// parameter says otherwise.
	Version string `yaml:"version"`
	// Extensions are official system extensions every machine's schematic
	// has, after those its NICs need (NICExtensions).
	Extensions []string `yaml:"extensions"`
	// NICExtensions maps a NIC's Linux driver, or its chip as the
	// inventory records it, to the extensions that carry its firmware:
	// Talos' own kernel lacks bnx2's and bnx2x's. A machine's schematic
	// starts with the extensions its NICs need; one whose NICs the
	// inventory does not know gets every extension listed here.
	NICExtensions map[string][]string `yaml:"nic_extensions"`
	// ExtraKernelArgs go into the schematic (and so into the factory's
	// kernel command line).
	ExtraKernelArgs []string `yaml:"extra_kernel_args"`
	// Arch is the architecture of the PXE assets (amd64 or arm64).
	Arch string `yaml:"arch"`
}

// Commission configures commissioning: the image provisiond builds from
// its own binary and a Debian kernel, and what happens to unknown
// machines.
type Commission struct {
	// KernelDir holds boot/vmlinuz-VERSION and lib/modules/VERSION: "/"
	// (the default) is the Debian kernel installed on this host (apt-get
	// install linux-image-amd64); or a linux-image package unpacked with
	// dpkg-deb -x, in the assets directory or anywhere.
	KernelDir string `yaml:"kernel_dir"`
	// Drivers are the kernel modules the image carries, with their
	// dependencies (empty: the homelab's NIC and disk drivers).
	Drivers []string `yaml:"drivers"`
	// FirmwareDirs are searched for the firmware the drivers name
	// (default /lib/firmware: Debian's firmware-* packages).
	FirmwareDirs []string `yaml:"firmware_dirs"`
	// Shell is a static busybox carried for holds (default /bin/busybox
	// when it is static: apt-get install busybox-static).
	Shell string `yaml:"shell"`
	// Auto commissions machines provisiond does not know when they
	// PXE-boot (default false: they get boot.default_profile).
	Auto bool `yaml:"auto"`
	// ReportWithin is how long after its image went out a commissioning
	// machine has to report before its timeline says it failed (default
	// 5m).
	ReportWithin string `yaml:"report_within"`
}

// ReportWithinDuration is commission.report_within parsed (Validate
// checks it).
func (c Commission) ReportWithinDuration() time.Duration {
	d, _ := time.ParseDuration(c.ReportWithin)
	return d
}

// Slurm configures how slurmctld's power saving requests are carried out.
type Slurm struct {
	// Stagger spaces the power-ons of one resume (default 10s: an
	// enclosure's power budget holds blades that come all at once).
	Stagger string `yaml:"stagger"`
	// SoftGrace is how long a suspended node may take to shut down after
	// the BMC's soft power-off before its power is cut (default 2m).
	SoftGrace string `yaml:"soft_grace"`
}

// StaggerDuration is slurm.stagger parsed (Validate checks it).
func (s Slurm) StaggerDuration() time.Duration {
	d, _ := time.ParseDuration(s.Stagger)
	return d
}

// SoftGraceDuration is slurm.soft_grace parsed (Validate checks it).
func (s Slurm) SoftGraceDuration() time.Duration {
	d, _ := time.ParseDuration(s.SoftGrace)
	return d
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// Default returns the embedded defaults: a daemon that works on a Debian
// machine with the ipxe package installed.
func Default() Config {
	return Config{
		DataDir: "/var/lib/provisiond",
		Store:   "bbolt",
		Etcd:    Etcd{Prefix: "/provisiond/", Timeout: "5s"},
		IPXEDir: "/usr/lib/ipxe",
		HTTP:    HTTP{Listen: ":8080", ReadAccess: "local", MaxConnections: 4096, MaxConnectionsPerSource: 64, RatePerSource: 50, MaxAssetStreams: 64},
		Control: Control{Listen: ":8443", MaxConnections: 256},
		DHCP:    DHCP{Enabled: true, Port: 67, ProxyPort: 4011},
		TFTP:    TFTP{Enabled: true, Port: 69, MaxBlockSize: 1468, MaxTransfers: 4096},
		Boot: Boot{
			BIOS:           "undionly.kpxe",
			UEFIx64:        "snponly.efi",
			UEFIx86:        "ipxe-i386.efi",
			UEFIARM64:      "ipxe-arm64.efi",
			ChainIPXE:      boot.ChainAuto,
			IPv6RA:         true,
			DefaultProfile: "menu",
			SecretWindow:   "10m",
		},
		Commission: Commission{KernelDir: "/", FirmwareDirs: []string{"/lib/firmware"}, Shell: "/bin/busybox", ReportWithin: "5m"},
		Slurm:      Slurm{Stagger: "10s", SoftGrace: "2m"},
		Talos: Talos{
			FactoryURL: "https://factory.talos.dev",
			Extensions: []string{"siderolabs/intel-ucode"},
			NICExtensions: map[string][]string{
				"bnx2": {"siderolabs/bnx2-bnx2x"}, "bnx2x": {"siderolabs/bnx2-bnx2x"},
				"be2net": {}, "tg3": {},
			},
			Arch: "amd64",
		},
		Log:                 Log{Level: "info", Format: "text"},
		BMC:                 BMC{Timeout: "30s", MaxConcurrent: 16},
		Roles:               audit.DefaultRoles(),
		Models:              audit.DefaultModels(),
		MaxEventsPerMachine: 1000,
		MaxDiscovered:       1024,
	}
}

// Load reads the YAML file at path over the defaults. A missing file is an
// error only when mustExist is set (the operator named it explicitly).
func Load(path string, mustExist bool) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("reading config %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate checks the configuration and says what to fix: section by
// section, the first fault found.
func (c *Config) Validate() error {
	for _, check := range []func() error{c.validateListeners, c.validateStore, c.validateBoot, c.validateLog, c.validateBMCTalos, c.validateRolesModels, c.validateCommission, c.validateSlurm} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateStore checks store and etcd.
func (c *Config) validateStore() error {
	switch c.Store {
	case "bbolt":
		return nil
	case "etcd":
	default:
		return fmt.Errorf("store %q is not bbolt or etcd", c.Store)
	}
	e := c.Etcd
	if len(e.Endpoints) == 0 {
		return errors.New("store is etcd but etcd.endpoints is empty: list the cluster's client URLs (https://HOST:2379)")
	}
	for _, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("etcd.endpoints: %q is not an http:// or https:// URL of a member (https://HOST:2379)", ep)
		}
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		return fmt.Errorf("etcd.prefix %q must start and end with / (e.g. /provisiond/)", e.Prefix)
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return errors.New("etcd.cert_file and etcd.key_file go together: set both or neither")
	}
	if d, err := time.ParseDuration(e.Timeout); err != nil || d <= 0 {
		return fmt.Errorf("etcd.timeout %q is not a positive duration such as 5s", e.Timeout)
	}
	return nil
}

// validateListeners checks data_dir, advertise, http and control.
func (c *Config) validateListeners() error {
	if c.DataDir == "" {
		return errors.New("data_dir is empty: set it to a directory provisiond may write (e.g. /var/lib/provisiond)")
	}
	if c.Advertise != "" {
		a, err := netip.ParseAddr(c.Advertise)
		if err != nil || !a.Is4() {
			return fmt.Errorf("advertise %q is not an IPv4 address", c.Advertise)
		}
	}
	if c.HTTP.Listen == "" {
		return errors.New("http.listen is empty: set it to an address such as :8080")
	}
	if _, err := c.HTTPPort(); err != nil {
		return err
	}
	switch c.HTTP.ReadAccess {
	case "local", "token", "open":
	default:
		return fmt.Errorf("http.read_access %q is not local, token or open", c.HTTP.ReadAccess)
	}
	if c.HTTP.MaxConnections < 16 || c.HTTP.MaxConnections > 1<<20 {
		return fmt.Errorf("http.max_connections %d is outside 16..1048576", c.HTTP.MaxConnections)
	}
	if c.Control.Listen == "" {
		return errors.New("control.listen is empty: set it to an address such as :8443")
	}
	if _, err := netip.ParseAddrPort(normalizeListen(c.Control.Listen)); err != nil {
		return fmt.Errorf("control.listen %q is not host:port (e.g. :8443 or 127.0.0.1:8443)", c.Control.Listen)
	}
	if (c.Control.CertFile == "") != (c.Control.KeyFile == "") {
		return errors.New("control.cert_file and control.key_file go together: set both, or neither for a self-signed certificate")
	}
	if c.Control.MaxConnections < 4 || c.Control.MaxConnections > 1<<16 {
		return fmt.Errorf("control.max_connections %d is outside 4..65536", c.Control.MaxConnections)
	}
	if c.HTTP.MaxAssetStreams < 0 {
		return fmt.Errorf("http.max_asset_streams %d is negative (0: no bound)", c.HTTP.MaxAssetStreams)
	}
	if c.HTTP.MaxConnectionsPerSource < 1 || c.HTTP.MaxConnectionsPerSource > c.HTTP.MaxConnections {
		return fmt.Errorf("http.max_connections_per_source %d is outside 1..http.max_connections (%d)", c.HTTP.MaxConnectionsPerSource, c.HTTP.MaxConnections)
	}
	if c.HTTP.RatePerSource < 0 || c.HTTP.RatePerSource > 1e6 {
		return fmt.Errorf("http.rate_per_source %g is outside 0..1000000 requests a second (0: no bound)", c.HTTP.RatePerSource)
	}
	return nil
}

// validateBoot checks boot, tftp and max_discovered.
func (c *Config) validateBoot() error {
	if d, err := time.ParseDuration(c.Boot.SecretWindow); err != nil || d < 30*time.Second || d > 24*time.Hour {
		return fmt.Errorf("boot.secret_window %q is not a duration between 30s and 24h (e.g. 10m)", c.Boot.SecretWindow)
	}
	for _, s := range c.Boot.TrustedSources {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("boot.trusted_sources: %q is not a network in CIDR form (e.g. 192.0.2.0/24)", s)
		}
	}
	if c.TFTP.MaxTransfers < 1 || c.TFTP.MaxTransfers > 65536 {
		return fmt.Errorf("tftp.max_transfers %d is outside 1..65536", c.TFTP.MaxTransfers)
	}
	if c.MaxDiscovered < 0 {
		return fmt.Errorf("max_discovered %d is negative (0 stores no discovered machine)", c.MaxDiscovered)
	}
	if c.TFTP.MaxBlockSize < 512 || c.TFTP.MaxBlockSize > 65464 {
		return fmt.Errorf("tftp.max_block_size %d is outside 512..65464", c.TFTP.MaxBlockSize)
	}
	switch c.Boot.ChainIPXE {
	case boot.ChainAuto, boot.ChainAlways, boot.ChainNever:
	default:
		return fmt.Errorf("boot.chain_ipxe %q is not one of auto, always, never", c.Boot.ChainIPXE)
	}
	if c.Boot.DefaultProfile == "" {
		return errors.New("boot.default_profile is empty: name a profile such as menu or local")
	}
	return nil
}

// ChainMode is boot.chain_ipxe: auto, always or never.
type ChainMode string

// UnmarshalYAML reads a chain mode, and the booleans the setting was before
// it had three values: true is always, false is never.
func (m *ChainMode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err != nil {
			return err
		}
		*m = boot.ChainNever
		if b {
			*m = boot.ChainAlways
		}
		return nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("boot.chain_ipxe: %w (one of auto, always, never)", err)
	}
	*m = ChainMode(strings.ToLower(s))
	return nil
}

// validateLog checks log.
func (c *Config) validateLog() error {
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q is not text or json", c.Log.Format)
	}
	return nil
}

// validateBMCTalos checks bmc and talos.
func (c *Config) validateBMCTalos() error {
	if d, err := time.ParseDuration(c.BMC.Timeout); err != nil || d < time.Second || d > 10*time.Minute {
		return fmt.Errorf("bmc.timeout %q is not a duration between 1s and 10m (e.g. 30s)", c.BMC.Timeout)
	}
	if c.BMC.MaxConcurrent < 1 || c.BMC.MaxConcurrent > 1024 {
		return fmt.Errorf("bmc.max_concurrent %d is outside 1..1024", c.BMC.MaxConcurrent)
	}
	if c.Talos.Arch != "amd64" && c.Talos.Arch != "arm64" {
		return fmt.Errorf("talos.arch %q is not amd64 or arm64", c.Talos.Arch)
	}
	if c.Talos.FactoryURL == "" {
		return errors.New("talos.factory_url is empty: set it to https://factory.talos.dev or a mirror")
	}
	return nil
}

// validateCommission checks the commission section.
func (c *Config) validateCommission() error {
	if d, err := time.ParseDuration(c.Commission.ReportWithin); err != nil || d < 30*time.Second || d > 2*time.Hour {
		return fmt.Errorf("commission.report_within %q is not a duration between 30s and 2h (e.g. 5m)", c.Commission.ReportWithin)
	}
	if c.Commission.KernelDir == "" {
		return errors.New("commission.kernel_dir is empty: / for the installed Debian kernel, or a linux-image package unpacked with dpkg-deb -x")
	}
	for _, d := range c.Commission.Drivers {
		if d == "" || strings.ContainsAny(d, "/ \t") {
			return fmt.Errorf("commission.drivers: %q is not a kernel module name (e.g. bnx2)", d)
		}
	}
	return nil
}

// validateSlurm checks the slurm section.
func (c *Config) validateSlurm() error {
	if d, err := time.ParseDuration(c.Slurm.Stagger); err != nil || d < 0 || d > 10*time.Minute {
		return fmt.Errorf("slurm.stagger %q is not a duration between 0s and 10m (e.g. 10s)", c.Slurm.Stagger)
	}
	if d, err := time.ParseDuration(c.Slurm.SoftGrace); err != nil || d < time.Second || d > time.Hour {
		return fmt.Errorf("slurm.soft_grace %q is not a duration between 1s and 1h (e.g. 2m)", c.Slurm.SoftGrace)
	}
	return nil
}

// validateRolesModels checks roles and models.
func (c *Config) validateRolesModels() error {
	for i := range c.Roles {
		if err := c.Roles[i].Validate(); err != nil {
			return fmt.Errorf("roles: %w", err)
		}
	}
	for _, m := range c.Models {
		if m.Match == "" {
			return errors.New("models: every model needs match (a part of its vendor and model name, e.g. \"BL460c Gen8\")")
		}
	}
	return nil
}

// HTTPPort is the port advertised in boot URLs.
func (c *Config) HTTPPort() (int, error) {
	if c.HTTP.Port != 0 {
		return c.HTTP.Port, nil
	}
	ap, err := netip.ParseAddrPort(normalizeListen(c.HTTP.Listen))
	if err != nil {
		return 0, fmt.Errorf("http.listen %q is not host:port (e.g. :8080 or 192.0.2.1:8080)", c.HTTP.Listen)
	}
	return int(ap.Port()), nil
}

func normalizeListen(s string) string {
	if strings.HasPrefix(s, ":") {
		return "0.0.0.0" + s
	}
	return s
}

// AssetDir returns the directory served under /assets/.
func (c *Config) AssetDir() string {
	if c.AssetsDir != "" {
		return c.AssetsDir
	}
	return c.DataDir + "/assets"
}

// Reloadable names what a reload (SIGHUP) applies: boot, profiles_dir,
// roles, models, log.level and commissioning's auto and report_within.
// Everything else is bound at start.
const Reloadable = "boot, profiles_dir, roles, models, log.level, commission.auto, commission.report_within"

// NeedRestart lists the settings that differ between c and next but only
// take effect on restart.
func (c *Config) NeedRestart(next *Config) []string {
	var out []string
	check := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	check("interfaces", c.Interfaces, next.Interfaces)
	check("advertise", c.Advertise, next.Advertise)
	check("data_dir", c.DataDir, next.DataDir)
	check("store", c.Store, next.Store)
	check("etcd", c.Etcd, next.Etcd)
	check("instance", c.Instance, next.Instance)
	check("ipxe_dir", c.IPXEDir, next.IPXEDir)
	check("assets_dir", c.AssetsDir, next.AssetsDir)
	check("http", c.HTTP, next.HTTP)
	check("control", c.Control, next.Control)
	check("dhcp", c.DHCP, next.DHCP)
	check("tftp", c.TFTP, next.TFTP)
	check("talos", c.Talos, next.Talos)
	check("bmc", c.BMC, next.BMC)
	a, b := c.Commission, next.Commission
	a.Auto, a.ReportWithin, b.Auto, b.ReportWithin = false, "", false, ""
	check("commission", a, b)
	check("slurm", c.Slurm, next.Slurm)
	check("log.format", c.Log.Format, next.Log.Format)
	check("max_events_per_machine", c.MaxEventsPerMachine, next.MaxEventsPerMachine)
	check("max_discovered", c.MaxDiscovered, next.MaxDiscovered)
	return out
}
