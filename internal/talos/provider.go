package talos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
)

// Provider gives the talos profile its Image Factory assets: the
// schematic (from the config or the machine's parameters), the cached kernel
// and initramfs, and the factory's kernel command line. Assets that are not
// cached yet are downloaded in the background while the machine waits.
type Provider struct {
	cfg     config.Talos
	factory *Factory
	cache   *assets.Cache
	root    string
	// Log hears what could not be checked (nil: nobody).
	Log *slog.Logger

	mu       sync.Mutex
	official map[string]officialList // by Talos version
}

// officialList is a factory's list of official extensions as fetched, or
// why it could not be.
type officialList struct {
	names []string
	err   error
	at    time.Time
}

// officialTTL is how long a factory's list of official extensions is
// reused (new extensions appear with Talos releases, not by the hour);
// failedTTL how long a factory that could not list them is not asked again
// (each assignment would otherwise wait for it).
const (
	officialTTL = 10 * time.Minute
	failedTTL   = time.Minute
)

// NewProvider returns the provider; root is the assets directory.
func NewProvider(cfg config.Talos, factory *Factory, cache *assets.Cache, root string) *Provider {
	return &Provider{cfg: cfg, factory: factory, cache: cache, root: root}
}

// FactoryURL is the Image Factory the provider fetches from.
func (t *Provider) FactoryURL() string { return t.factory.BaseURL }

// Name implements the booter's Extra (a provider of template values).
func (t *Provider) Name() string { return "talos" }

// Wants says whether profile p uses the provider's values.
func (t *Provider) Wants(p *profile.Profile) bool { return slices.Contains(p.Uses, "talos") }

// Request is what to fetch: a version and a schematic.
type Request struct {
	Version         string   `json:"version"`
	Extensions      []string `json:"extensions,omitempty"`
	ExtraKernelArgs []string `json:"extra_kernel_args,omitempty"`
}

// RequestFor resolves machine m's schematic (nil: a machine whose hardware is
// unknown): the extensions its NICs need, then the machine's
// talos_extensions or the config's, and its parameters over the config.
// why says where the NICs' extensions come from.
func (t *Provider) RequestFor(m *inventory.Machine, params map[string]string) (r Request, why string) {
	r = Request{Version: t.cfg.Version, ExtraKernelArgs: t.cfg.ExtraKernelArgs}
	base := t.cfg.Extensions
	if v := params["talos_version"]; v != "" {
		r.Version = v
	}
	if v, ok := params["talos_extensions"]; ok && v != "" {
		base = strings.Split(v, ",")
	}
	if v, ok := params["talos_schematic_args"]; ok && v != "" {
		r.ExtraKernelArgs = strings.Fields(v)
	}
	nic, why := t.nicExtensions(m)
	for _, e := range append(nic, base...) {
		if e = strings.TrimSpace(e); e != "" && !slices.Contains(r.Extensions, e) {
			r.Extensions = append(r.Extensions, e)
		}
	}
	return r, why
}

// nicExtensions returns the extensions machine m's NICs need (by driver,
// else chip, in talos.nic_extensions), in the NICs' order, and why. A
// machine with no NIC the inventory knows gets every extension listed:
// never a Talos without the firmware its NIC may need.
func (t *Provider) nicExtensions(m *inventory.Machine) ([]string, string) {
	table := map[string][]string{}
	for k, v := range t.cfg.NICExtensions {
		table[strings.ToLower(k)] = v
	}
	var out, reasons []string
	add := func(exts []string) {
		for _, e := range exts {
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
		}
	}
	known := false
	if m != nil {
		for _, n := range m.NICs {
			for _, key := range []string{n.Driver, n.Chip} {
				exts, ok := table[strings.ToLower(key)]
				if key == "" || !ok {
					continue
				}
				known = true
				if len(exts) > 0 {
					add(exts)
					reasons = append(reasons, strings.Join(exts, " ")+" for NIC "+key)
				} else {
					reasons = append(reasons, "NIC "+key+" needs no firmware")
				}
				break
			}
		}
	}
	if !known {
		keys := slices.Sorted(maps.Keys(table))
		for _, k := range keys {
			add(table[k])
		}
		return out, "NICs unknown, so every NIC firmware in talos.nic_extensions"
	}
	return out, strings.Join(reasons, ", ")
}

// Plan works out the schematic, its ID and the cache entry for r.
func (t *Provider) Plan(r Request) (Schematic, string, string, error) {
	if r.Version == "" {
		return Schematic{}, "", "", fmt.Errorf("no Talos version: set talos.version in the config or --param talos_version=v1.x.y on the machine")
	}
	if err := ValidVersion(r.Version); err != nil {
		return Schematic{}, "", "", err
	}
	s := New(r.Extensions, r.ExtraKernelArgs)
	id, err := s.ID()
	if err != nil {
		return s, "", "", err
	}
	return s, id, path.Join("talos", r.Version, id, t.cfg.Arch), nil
}

// Pull starts (or joins) the download of a version and schematic.
func (t *Provider) Pull(r Request) (*assets.Job, string, error) {
	s, id, entry, err := t.Plan(r)
	if err != nil {
		return nil, "", err
	}
	k, i, c := Assets(t.cfg.Arch)
	var files []assets.Source
	for _, f := range []string{k, i, c} {
		files = append(files, assets.Source{Name: f, URL: t.factory.AssetURL(id, r.Version, f)})
	}
	meta := map[string]string{"kind": "talos", "version": r.Version, "schematic": id, "arch": t.cfg.Arch,
		"extensions": strings.Join(s.Customization.SystemExtensions.OfficialExtensions, ","), "factory": t.factory.BaseURL}
	job := t.cache.Fetch(entry, files, meta, func(ctx context.Context) error {
		// The factory takes any name and boots a Talos without it:
		// check the names first (the firmware a NIC needs, for one).
		if err := t.checkNames(ctx, r.Version, r.Extensions); err != nil {
			return err
		}
		_, err := t.factory.Register(ctx, s)
		return err
	})
	return job, id, nil
}

// checkNames checks extension names against the factory's official list
// for version. A factory that cannot list them is not an error: it is
// said in the log, and the names go unchecked.
func (t *Provider) checkNames(ctx context.Context, version string, names []string) error {
	official, err := t.officialExtensions(ctx, version)
	if errors.Is(err, ErrCannotCheck) {
		if t.Log != nil {
			t.Log.Warn("Talos extension names not checked", "version", version, "extensions", strings.Join(names, ","), "err", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return CheckExtensions(names, official, version)
}

// Schematic is machine m's schematic as its script would have it: version,
// ID, extensions and why its NICs need them.
// params are the machine's parameters over the config's defaults.
func (t *Provider) Schematic(m *inventory.Machine, params map[string]string) (version, id string, extensions []string, why string, err error) {
	r, why := t.RequestFor(m, params)
	_, id, _, err = t.Plan(r)
	return r.Version, id, r.Extensions, why, err
}

// officialExtensions is the factory's list for version, fetched at most
// once per officialTTL (a factory that cannot list them: once per
// failedTTL).
func (t *Provider) officialExtensions(ctx context.Context, version string) ([]string, error) {
	t.mu.Lock()
	l, ok := t.official[version]
	t.mu.Unlock()
	switch {
	case ok && l.err == nil && time.Since(l.at) < officialTTL:
		return l.names, nil
	case ok && l.err != nil && time.Since(l.at) < failedTTL:
		return nil, l.err
	}
	names, err := t.factory.OfficialExtensions(ctx, version)
	if err != nil && !errors.Is(err, ErrCannotCheck) {
		return nil, err
	}
	t.mu.Lock()
	if t.official == nil {
		t.official = map[string]officialList{}
	}
	t.official[version] = officialList{names: names, err: err, at: time.Now()}
	t.mu.Unlock()
	return names, err
}

// CheckMachine checks the extension names machine m's schematic would
// have (its NICs', then its own or the config's) against the factory,
// before an assignment: an unknown name is an error naming it and the
// nearest official ones. A factory that cannot be asked is not an error:
// the warning says the check could not be made. params are the machine's
// parameters over the config's defaults.
func (t *Provider) CheckMachine(ctx context.Context, m *inventory.Machine, params map[string]string) (warning string, err error) {
	r, _ := t.RequestFor(m, params)
	if _, _, _, err := t.Plan(r); err != nil {
		return "", err
	}
	official, err := t.officialExtensions(ctx, r.Version)
	if errors.Is(err, ErrCannotCheck) {
		return "Talos extension names (" + strings.Join(r.Extensions, ", ") + ") not checked: " + err.Error(), nil
	}
	if err != nil {
		return "", err
	}
	return "", CheckExtensions(r.Extensions, official, r.Version)
}

// CheckConfig checks the configured extension names (talos.extensions and
// every talos.nic_extensions entry) for the configured version against the
// factory: an unknown name is an error that names it and the nearest
// official ones; a factory that cannot be asked says so in the log.
func (t *Provider) CheckConfig(ctx context.Context) error {
	if t.cfg.Version == "" {
		return nil
	}
	names := slices.Clone(t.cfg.Extensions)
	for _, k := range slices.Sorted(maps.Keys(t.cfg.NICExtensions)) {
		names = append(names, t.cfg.NICExtensions[k]...)
	}
	return t.checkNames(ctx, t.cfg.Version, names)
}

// Values implements the booter's Extra: kernel and initramfs paths below /assets/, the
// factory's command line, the schematic ID and the version.
func (t *Provider) Values(_ context.Context, m *inventory.Machine, params map[string]string) (map[string]string, error) {
	r, why := t.RequestFor(m, params)
	_, id, entry, err := t.Plan(r)
	if err != nil {
		return nil, err
	}
	k, i, c := Assets(t.cfg.Arch)
	if _, ok := t.cache.Complete(entry); ok {
		raw, err := os.ReadFile(filepath.Join(t.root, filepath.FromSlash(entry), c))
		if err != nil {
			return nil, fmt.Errorf("reading the cached Talos command line: %w", err)
		}
		return map[string]string{
			"kernel": path.Join(entry, k), "initramfs": path.Join(entry, i), "cmdline": strings.Join(strings.Fields(string(raw)), " "),
			"schematic": id, "version": r.Version, "extensions": strings.Join(r.Extensions, " "), "why": why,
		}, nil
	}
	what := fmt.Sprintf("downloading Talos %s (schematic %s) from %s", r.Version, id[:12], t.factory.BaseURL)
	if at, ferr := t.cache.LastFailure(entry); ferr != nil && time.Since(at) < 30*time.Second && t.cache.Running(entry) == nil {
		return nil, &profile.NotReadyError{What: "the last Talos download failed: " + ferr.Error(), RetryAfter: 30 * time.Second}
	}
	job, _, err := t.Pull(r)
	if err != nil {
		return nil, err
	}
	if p := job.Last(); p.Total > 0 {
		what += fmt.Sprintf(": %s %d%% of %d MB", p.File, p.Bytes*100/p.Total, p.Total>>20)
	}
	return nil, &profile.NotReadyError{What: what, RetryAfter: 15 * time.Second}
}
