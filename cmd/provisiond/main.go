// Command provisiond is a bare-metal provisioning daemon (ProxyDHCP, TFTP,
// iPXE scripts over HTTP, inventory) and the CLI that talks to it.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/profiles"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// env is the process environment, read only here.
type env struct {
	get    func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// clientFlags are the flags every CLI command that talks to the daemon has.
type clientFlags struct {
	server       string
	token        string
	tokenFile    string
	tokenFileSet bool
	output       string
	fingerprint  string
	clientConfig string
	insecure     bool
}

const defaultConfigPath = "/etc/provisiond/provisiond.yaml"

func main() {
	if os.Getpid() == 1 && os.Args[0] == "/init" {
		// The kernel ran provisiond as an initramfs's /init: it is the
		// commissioning image (in a container, process 1 has another
		// name and serves as usual).
		commissionInit()
	}
	e := env{get: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(ctx, e)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(e.stderr, "provisiond:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

func newRoot(ctx context.Context, e env) *cobra.Command {
	cf := &clientFlags{}
	root := &cobra.Command{
		Use:           "provisiond",
		Short:         "Bare-metal provisioning: ProxyDHCP, TFTP, iPXE scripts, inventory",
		Long:          "provisiond PXE-boots machines next to a home router (as ProxyDHCP, never handing out addresses),\nserves iPXE and per-machine scripts, and keeps an inventory with every machine's boot timeline.\n\n'provisiond serve' runs the daemon; every other command is a client of its API.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&cf.server, "server", cmp.Or(e.get("PROVISIOND_SERVER"), "https://127.0.0.1:8443"), "daemon's control plane URL (env PROVISIOND_SERVER)")
	pf.StringVar(&cf.fingerprint, "fingerprint", e.get("PROVISIOND_FINGERPRINT"), "trust only the control plane certificate with this SHA-256 fingerprint (env PROVISIOND_FINGERPRINT; default: the pin in the client config)")
	pf.StringVar(&cf.clientConfig, "client-config", "", "file of trusted servers and their pins (env PROVISIOND_CLIENT_CONFIG; default ~/.config/provisiond/client.yaml)")
	pf.BoolVar(&cf.insecure, "insecure", false, "do not check the control plane's certificate (never do this on a shared network)")
	pf.StringVar(&cf.token, "token", e.get("PROVISIOND_TOKEN"), "API token for changes (env PROVISIOND_TOKEN; default: read --token-file)")
	pf.StringVar(&cf.tokenFile, "token-file", cmp.Or(e.get("PROVISIOND_TOKEN_FILE"), "/var/lib/provisiond/"+daemon.TokenFile), "file holding the API token (env PROVISIOND_TOKEN_FILE)")
	pf.StringVarP(&cf.output, "output", "o", "table", "output format: table, json or yaml")

	root.AddCommand(newServe(ctx, e), newMachine(cf, e), newEvents(cf, e), newProfile(cf, e), newSecret(cf, e), newAssets(cf, e), newStatus(cf, e),
		newImport(cf, e), newExport(cf, e), newAudit(cf, e), newPlan(cf, e), newAgent(cf, e),
		newSystems(cf, e), newEnclosure(cf, e), newLocate(cf, e), newParts(cf, e), newRoles(cf, e), newSlurm(cf, e),
		newPower(cf, e), newBootdev(cf, e), newAssign(cf, e), newCommission(cf, e), newBMCCmd(cf, e), newBackup(cf, e), newRestore(e), newMigrate(e), newTrust(cf, e))
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		cf.tokenFileSet = cmd.Flags().Changed("token-file") || e.get("PROVISIOND_TOKEN_FILE") != ""
	}
	return root
}

// serveFlags are serve's flags: each given one is put over the config
// file, at start and again on SIGHUP.
type serveFlags struct {
	configPath                               string
	ifaces                                   []string
	advertise, listen, ctlListen             string
	dataDir, ipxeDir, profilesDir, assetsDir string
	logLevel, logFormat, defProfile          string
	blksize                                  int
	bmcTimeout                               time.Duration
	noDHCP, noTFTP                           bool
}

func (sf *serveFlags) register(f *pflag.FlagSet) {
	f.StringVarP(&sf.configPath, "config", "c", defaultConfigPath, "YAML config file")
	f.StringSliceVarP(&sf.ifaces, "interface", "i", nil, "interface to serve DHCP/TFTP on (repeat or comma-separate; default: all up, non-loopback with IPv4)")
	f.StringVar(&sf.advertise, "advertise", "", "IPv4 address given to clients for TFTP/HTTP (default: the address of the interface a request came in on)")
	f.StringVar(&sf.listen, "http-listen", "", "boot plane listen address: iPXE scripts, boot files, callbacks over plain HTTP (default :8080)")
	f.StringVar(&sf.ctlListen, "control-listen", "", "control plane listen address: API, dashboard, metrics over TLS (default :8443)")
	f.StringVar(&sf.dataDir, "data-dir", "", "data directory: bbolt database, API token, assets (default /var/lib/provisiond)")
	f.StringVar(&sf.ipxeDir, "ipxe-dir", "", "directory with the iPXE binaries (default /usr/lib/ipxe)")
	f.StringVar(&sf.profilesDir, "profiles-dir", "", "directory of profiles that override or add to the built-in ones")
	f.StringVar(&sf.assetsDir, "assets-dir", "", "directory served under /assets/ (default DATA_DIR/assets)")
	f.StringVar(&sf.logLevel, "log-level", "", "log level: debug, info, warn, error (default info)")
	f.StringVar(&sf.logFormat, "log-format", "", "log format: text or json (default text)")
	f.IntVar(&sf.blksize, "tftp-max-blksize", 0, "largest TFTP block size to negotiate (default 1468)")
	f.StringVar(&sf.defProfile, "default-profile", "", "profile for unknown machines and machines without one (default menu)")
	f.DurationVar(&sf.bmcTimeout, "bmc-timeout", 0, "bound on each BMC call: connect, power, boot device, inventory (default 30s)")
	f.BoolVar(&sf.noDHCP, "no-dhcp", false, "do not run the ProxyDHCP server")
	f.BoolVar(&sf.noTFTP, "no-tftp", false, "do not run the TFTP server")
}

// load reads the config file (the default one only if present) and puts
// the flags given over it.
func (sf *serveFlags) load(f *pflag.FlagSet) (config.Config, error) {
	cfg, err := config.Load(sf.configPath, f.Changed("config"))
	if err != nil {
		return cfg, err
	}
	for flag, set := range map[string]func(){
		"interface":        func() { cfg.Interfaces = sf.ifaces },
		"advertise":        func() { cfg.Advertise = sf.advertise },
		"control-listen":   func() { cfg.Control.Listen = sf.ctlListen },
		"http-listen":      func() { cfg.HTTP.Listen = sf.listen },
		"data-dir":         func() { cfg.DataDir = sf.dataDir },
		"ipxe-dir":         func() { cfg.IPXEDir = sf.ipxeDir },
		"profiles-dir":     func() { cfg.ProfilesDir = sf.profilesDir },
		"assets-dir":       func() { cfg.AssetsDir = sf.assetsDir },
		"log-level":        func() { cfg.Log.Level = sf.logLevel },
		"log-format":       func() { cfg.Log.Format = sf.logFormat },
		"tftp-max-blksize": func() { cfg.TFTP.MaxBlockSize = sf.blksize },
		"default-profile":  func() { cfg.Boot.DefaultProfile = sf.defProfile },
		"bmc-timeout":      func() { cfg.BMC.Timeout = sf.bmcTimeout.String() },
	} {
		if f.Changed(flag) {
			set()
		}
	}
	if sf.noDHCP {
		cfg.DHCP.Enabled = false
	}
	if sf.noTFTP {
		cfg.TFTP.Enabled = false
	}
	return cfg, nil
}

func newServe(ctx context.Context, e env) *cobra.Command {
	var sf serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: ProxyDHCP (67, 4011), TFTP (69), HTTP boot and API",
		Long: "Run the daemon. It reads the YAML config (default " + defaultConfigPath + ", used if present),\n" +
			"then the flags override it. Without any config it runs on its embedded defaults.\n" +
			"SIGTERM or Ctrl-C stops it cleanly (transfers get 10s to finish); SIGHUP reloads the config file\n" +
			"and the profiles (" + config.Reloadable + "), keeping the last good set on error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			load := func() (config.Config, error) { return sf.load(cmd.Flags()) }
			cfg, err := load()
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("config: %w", err)
			}
			level := new(slog.LevelVar)
			log := newLogger(e.stderr, cfg.Log, level)
			reload := make(chan struct{}, 1)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					select {
					case reload <- struct{}{}:
					default:
					}
				}
			}()
			self, err := os.Executable()
			if err != nil {
				log.Warn("cannot find provisiond's own binary: commissioning is not available", "err", err)
			}
			return daemon.Run(ctx, cfg, daemon.Options{Builtin: profiles.FS, Version: version, Log: log, Reload: reload, Getenv: e.get,
				LoadConfig: load, LogLevel: level, Binary: self})
		},
	}
	sf.register(cmd.Flags())
	return cmd
}

// newLogger returns the daemon's logger; level is set from lc and can be
// changed later (reload).
func newLogger(w io.Writer, lc config.Log, level *slog.LevelVar) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(lc.Level))
	level.Set(lvl)
	o := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// render writes v as JSON or YAML when asked; it returns false for table
// output, which the caller prints itself.
func render(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case "json":
		return true, writeJSON(w, v)
	case "yaml":
		return true, yaml.NewEncoder(w).Encode(v)
	case "table", "":
		return false, nil
	}
	return true, fmt.Errorf("unknown output format %q: use table, json or yaml", format)
}
