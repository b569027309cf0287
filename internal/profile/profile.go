// Package profile loads boot profiles (an iPXE template plus a YAML sidecar)
// and renders them with values made safe for iPXE.
package profile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"go.yaml.in/yaml/v3"
)

// Param describes one profile parameter.
type Param struct {
	// Description tells the operator what the parameter does.
	Description string `yaml:"description" json:"description,omitempty"`
	// Default is used when neither machine nor config sets the parameter.
	Default string `yaml:"default" json:"default,omitempty"`
	// Required parameters must have a value for the profile to render.
	Required bool `yaml:"required" json:"required,omitempty"`
	// Secret parameters hold the name of a stored secret (provisiond
	// secret set NAME); the script gets the secret's value, listings and
	// redacted renders never do.
	Secret bool `yaml:"secret" json:"secret,omitempty"`
	// Choices, when set, are the only values the parameter may take.
	Choices []string `yaml:"choices" json:"choices,omitempty"`
}

// When a one-shot boot counts as consumed.
const (
	// ConsumedOnScript: as soon as the script was served (local, shell).
	ConsumedOnScript = "script"
	// ConsumedOnAssets: when every asset the script names was served in full.
	ConsumedOnAssets = "assets"
	// ConsumedOnCallback: when the booted OS called back.
	ConsumedOnCallback = "callback"
)

// Profile is a loaded, parsed profile.
type Profile struct {
	// Name is the file's base name (linux for linux.yaml + linux.ipxe).
	Name string `json:"name"`
	// Description is one line for listings and menus.
	Description string `json:"description"`
	// Params are the parameters the template reads.
	Params map[string]Param `json:"params,omitempty"`
	// ConsumedOn says when a one-shot boot of this profile is used up:
	// script, assets or callback.
	ConsumedOn string `json:"consumed_on"`
	// Menu is false for profiles a boot menu must not offer.
	Menu bool `json:"menu"`
	// Uses names the providers whose values the template reads with
	// {{extra "provider" "key"}} (talos, slurm).
	Uses []string `json:"uses,omitempty"`
	// Source says where the profile came from (builtin or a directory).
	Source string `json:"source"`
	// Template is the iPXE template text.
	Template string `json:"template,omitempty"`
	// Overlay lists the per-machine overlay files.
	Overlay []OverlaySpec `json:"overlay,omitempty"`
	// Config is the template of the per-machine config document the OS
	// fetches from the script's configURL (Talos: talos.config=), so what
	// it holds (a join token) stays off the kernel command line.
	Config string `json:"config,omitempty"`
	// UsesMenu is true when the template reads .Menu (only then does a
	// render need the list of the machine's bootable profiles).
	UsesMenu bool `json:"-"`

	tmpl    *template.Template
	overlay []*template.Template
	modes   []uint32
	config  *template.Template
}

type sidecar struct {
	Description string           `yaml:"description"`
	Params      map[string]Param `yaml:"params"`
	ConsumedOn  string           `yaml:"consumed_on"`
	Menu        *bool            `yaml:"menu"`
	Uses        []string         `yaml:"uses"`
	Overlay     []OverlaySpec    `yaml:"overlay"`
	Config      string           `yaml:"config"`
}

// OverlaySpec is one file of a profile's per-machine overlay: provisiond
// renders it for each machine and serves the files as a cpio archive that
// the kernel unpacks over the base image.
type OverlaySpec struct {
	// Path is the file's absolute path in the booted system.
	Path string `yaml:"path" json:"path"`
	// Mode is the octal file mode (default 0644).
	Mode string `yaml:"mode" json:"mode,omitempty"`
	// Template is the file's content, a Go template like the script's.
	Template string `yaml:"template" json:"-"`
}

// OverlayFile is a rendered overlay file.
type OverlayFile struct {
	Path string
	Mode uint32
	Data []byte
}

// Set is a named collection of profiles.
type Set struct {
	profiles map[string]*Profile
}

// Load reads every profile in builtin, then every profile in dir (when dir
// is not empty), which replaces or adds to the built-in ones. Every error
// names the file (and the line, for template errors).
func Load(builtin fs.FS, dir string) (*Set, error) {
	s := &Set{profiles: map[string]*Profile{}}
	if err := s.loadFS(builtin, "builtin"); err != nil {
		return nil, err
	}
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("profiles directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("profiles directory %s is not a directory", dir)
		}
		if err := s.loadFS(os.DirFS(dir), dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Set) loadFS(fsys fs.FS, source string) error {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return err
	}
	var errs []error
	for _, yname := range names {
		name := strings.TrimSuffix(yname, ".yaml")
		p, err := loadOne(fsys, name, source)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.profiles[name] = p
	}
	// A template without a sidecar is a mistake worth naming.
	tmpls, _ := fs.Glob(fsys, "*.ipxe")
	for _, t := range tmpls {
		if _, err := fs.Stat(fsys, strings.TrimSuffix(t, ".ipxe")+".yaml"); err != nil {
			errs = append(errs, fmt.Errorf("profile %s: no %s.yaml beside it (description and parameters)", path.Join(source, t), strings.TrimSuffix(t, ".ipxe")))
		}
	}
	return errors.Join(errs...)
}

func loadOne(fsys fs.FS, name, source string) (*Profile, error) {
	where := func(f string) string { return path.Join(source, f) }
	raw, err := fs.ReadFile(fsys, name+".yaml")
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", where(name+".yaml"), err)
	}
	var sc sidecar
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("profile %s: %w", where(name+".yaml"), err)
	}
	switch sc.ConsumedOn {
	case "":
		sc.ConsumedOn = ConsumedOnScript
	case ConsumedOnScript, ConsumedOnAssets, ConsumedOnCallback:
	default:
		return nil, fmt.Errorf("profile %s: consumed_on %q is not script, assets or callback", where(name+".yaml"), sc.ConsumedOn)
	}
	body, err := fs.ReadFile(fsys, name+".ipxe")
	if err != nil {
		return nil, fmt.Errorf("profile %s: template %s: %w", name, where(name+".ipxe"), err)
	}
	if !bytes.HasPrefix(body, []byte("#!ipxe")) {
		return nil, fmt.Errorf("profile %s:1: an iPXE script must start with #!ipxe", where(name+".ipxe"))
	}
	p := &Profile{Name: name, Description: sc.Description, Params: sc.Params, ConsumedOn: sc.ConsumedOn,
		Menu: sc.Menu == nil || *sc.Menu, Uses: sc.Uses, Source: source, Template: string(body)}
	t, err := template.New(where(name + ".ipxe")).Option("missingkey=error").Funcs(funcs(&renderState{})).Parse(string(body))
	if err != nil {
		return nil, fmt.Errorf("profile %w", err)
	}
	usesMenu, err := checkParams(t, p.Params)
	if err != nil {
		return nil, err
	}
	p.tmpl, p.UsesMenu = t, usesMenu
	for i, o := range sc.Overlay {
		at := fmt.Sprintf("%s overlay %s", where(name+".yaml"), o.Path)
		if !strings.HasPrefix(o.Path, "/") || path.Clean(o.Path) != o.Path || o.Path == "/" {
			return nil, fmt.Errorf("profile %s: the path must be absolute and clean", at)
		}
		mode := uint64(0o644)
		if o.Mode != "" {
			var err error
			if mode, err = strconv.ParseUint(o.Mode, 8, 32); err != nil || mode > 0o7777 {
				return nil, fmt.Errorf("profile %s: mode %q is not an octal file mode such as 0600", at, o.Mode)
			}
		}
		ot, err := template.New(at).Option("missingkey=error").Funcs(funcs(&renderState{})).Parse(o.Template)
		if err != nil {
			return nil, fmt.Errorf("profile %w", err)
		}
		if _, err := checkParams(ot, p.Params); err != nil {
			return nil, err
		}
		p.overlay = append(p.overlay, ot)
		p.modes = append(p.modes, uint32(mode))
		sc.Overlay[i].Template = o.Template
	}
	p.Overlay = sc.Overlay
	if sc.Config != "" {
		at := where(name+".yaml") + " config"
		ct, err := template.New(at).Option("missingkey=error").Funcs(funcs(&renderState{})).Parse(sc.Config)
		if err != nil {
			return nil, fmt.Errorf("profile %w", err)
		}
		if _, err := checkParams(ct, p.Params); err != nil {
			return nil, err
		}
		p.config, p.Config = ct, sc.Config
	} else if strings.Contains(string(body), "configURL") {
		return nil, fmt.Errorf("profile %s: the template uses configURL but %s has no config template", where(name+".ipxe"), where(name+".yaml"))
	}
	return p, nil
}

// checkParams reports a template's use of .Params.X where X is not declared
// in the sidecar, with file and line, and whether the template reads .Menu.
func checkParams(t *template.Template, declared map[string]Param) (bool, error) {
	var errs []error
	usesMenu := false
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.FieldNode:
			if len(n.Ident) >= 1 && n.Ident[0] == "Menu" {
				usesMenu = true
			}
			if len(n.Ident) >= 2 && n.Ident[0] == "Params" {
				if _, ok := declared[n.Ident[1]]; !ok {
					loc, _ := t.ErrorContext(n)
					errs = append(errs, fmt.Errorf("profile %s: parameter %s is used but not declared in the sidecar's params", loc, n.Ident[1]))
				}
			}
		}
	}
	walk(t.Tree.Root)
	return usesMenu, errors.Join(errs...)
}

// Missing lists the required parameters that neither the profile's
// defaults nor params give a value (sorted).
func (p *Profile) Missing(params map[string]string) []string {
	var out []string
	for k, spec := range p.Params {
		if spec.Required && spec.Default == "" && params[k] == "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Get returns the named profile.
func (s *Set) Get(name string) (*Profile, bool) {
	p, ok := s.profiles[name]
	return p, ok
}

// List returns the profiles sorted by name.
func (s *Set) List() []*Profile {
	out := make([]*Profile, 0, len(s.profiles))
	for _, p := range s.profiles {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// MenuItem is a profile a boot menu offers.
type MenuItem struct {
	Name, Description string
}

// Data is what a template sees. Every string in it has passed Safe, so a
// template can place it on an iPXE line as it is.
type Data struct {
	// Name is the machine's name.
	Name string
	// MAC is the booting NIC.
	MAC string
	// Hostname, IP, Netmask, Gateway come from the inventory (may be empty).
	Hostname, IP, Netmask, Gateway string
	// KernelArgs are the machine's extra kernel arguments.
	KernelArgs string
	// Profile is the profile's name.
	Profile string
	// Params are the resolved parameters (profile defaults, then config
	// defaults, then the machine's own).
	Params map[string]string
	// BaseURL is provisiond's HTTP base URL as the client reached it.
	BaseURL string
	// CallbackURL is where the booted OS reports that it is up.
	CallbackURL string
	// FactsURL is where a commissioning OS posts its report.
	FactsURL string
	// ScriptURL is the machine's first-stage script (menus chain to it).
	ScriptURL string
	// ProfileURL, with a profile's name appended, is the URL of that
	// profile's script for this machine (boot menus chain to it).
	ProfileURL string
	// OverlayURL is the URL of this machine's overlay archive for the
	// profile (profiles with overlay files load it as an extra initrd).
	OverlayURL string
	// Discovered is true for machines provisiond does not know yet.
	Discovered bool
	// Once is true while the profile is a one-shot assignment.
	Once bool
	// Menu lists the profiles a boot menu may offer this machine.
	Menu []MenuItem
	// Secret resolves a secret parameter's value (its name in, value
	// out). Nil means secrets are rendered redacted.
	Secret func(name string) (string, error) `json:"-"`
	// ConfigURL returns the URL of this machine's config document for the
	// profile (the template's configURL). The URL carries the boot's
	// nonce, so it is handed out as a secret is; nil renders it with the
	// nonce redacted.
	ConfigURL func() (string, error) `json:"-"`
	// Extra holds values from provisiond's providers (Talos kernel
	// command line and asset paths, for example), keyed by provider.
	Extra map[string]map[string]string
}

// NotReadyError says a machine's boot needs something provisiond is still
// preparing (a download): a provider of template values returns it, and the
// machine is told to wait and ask again.
type NotReadyError struct {
	What       string
	RetryAfter time.Duration
}

// Error says what the boot waits for.
func (e *NotReadyError) Error() string { return e.What }

// Rendered is a rendered script and what it needs from provisiond.
type Rendered struct {
	// Script is the iPXE script.
	Script []byte
	// Assets are the files below /assets/ the script names.
	Assets []string
}

// Redacted is what a secret looks like in a redacted render.
const Redacted = "REDACTED"

type renderState struct {
	d      Data
	assets []string
}

// prepared is a render's resolved parameters.
type prepared struct {
	d            Data
	placeholders map[string]string
}

// prepare resolves the parameters (profile defaults, then the data's) and
// checks every value. Secret parameters hold a placeholder while templates
// run; only the secrets an output really contains are looked up afterwards,
// so an unused one (Omni's token on a machine without Omni) costs nothing.
func (p *Profile) prepare(d Data) (*prepared, error) {
	params := map[string]string{}
	for k, v := range p.Params {
		params[k] = v.Default
	}
	for k, v := range d.Params {
		params[k] = v
	}
	keys := make([]string, 0, len(p.Params))
	for k := range p.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	placeholders := map[string]string{}
	for _, k := range keys {
		spec := p.Params[k]
		if spec.Required && params[k] == "" {
			return nil, fmt.Errorf("profile %s needs parameter %s: set it with provisiond machine set %s --param %s=VALUE", p.Name, k, d.Name, k)
		}
		if len(spec.Choices) > 0 && params[k] != "" && !slices.Contains(spec.Choices, params[k]) {
			return nil, fmt.Errorf("profile %s: parameter %s is %q, not one of %s (provisiond machine set %s --param %s=%s)",
				p.Name, k, params[k], strings.Join(spec.Choices, ", "), d.Name, k, spec.Choices[0])
		}
		if spec.Secret && params[k] != "" {
			if err := Safe(params[k]); err != nil {
				return nil, fmt.Errorf("parameter %s names a secret: %w", k, err)
			}
			ph := fmt.Sprintf("@@provisiond-secret-%d@@", len(placeholders))
			placeholders[ph] = params[k]
			params[k] = ph
		}
	}
	for k, v := range params {
		if p.Params[k].Secret {
			continue
		}
		if err := Safe(v); err != nil {
			return nil, fmt.Errorf("parameter %s: %w", k, err)
		}
	}
	for field, v := range map[string]string{"name": d.Name, "hostname": d.Hostname, "kernel_args": d.KernelArgs, "address": d.IP, "gateway": d.Gateway} {
		if err := Safe(v); err != nil {
			return nil, fmt.Errorf("machine %s: %s: %w", d.Name, field, err)
		}
	}
	for prov, kv := range d.Extra {
		for k, v := range kv {
			if err := Safe(v); err != nil {
				return nil, fmt.Errorf("%s %s: %w", prov, k, err)
			}
		}
	}
	d.Params = params
	return &prepared{d: d, placeholders: placeholders}, nil
}

// execute runs one template with the prepared data, then puts the secrets
// in; safe says whether their values must be safe for an iPXE line.
func (p *Profile) execute(t *template.Template, pr *prepared, st *renderState, safe bool) (string, error) {
	t, err := t.Clone()
	if err != nil {
		return "", err
	}
	t.Funcs(funcs(st))
	var buf bytes.Buffer
	if err := t.Execute(&buf, pr.d); err != nil {
		return "", fmt.Errorf("rendering profile %s: %w", p.Name, err)
	}
	out := buf.String()
	for ph, name := range pr.placeholders {
		if !strings.Contains(out, ph) {
			continue
		}
		v := Redacted
		if pr.d.Secret != nil {
			if v, err = pr.d.Secret(name); err != nil {
				return "", fmt.Errorf("profile %s: %w", p.Name, err)
			}
			if safe && Safe(v) != nil {
				return "", fmt.Errorf("profile %s: secret %s has characters iPXE would read as script syntax (a newline, '$', '||', '&&' or '#')", p.Name, name)
			}
		}
		out = strings.ReplaceAll(out, ph, v)
	}
	return out, nil
}

// Render executes the profile with data. Missing required parameters and
// values that are unsafe for iPXE are errors that name the parameter.
func (p *Profile) Render(d Data) (*Rendered, error) {
	pr, err := p.prepare(d)
	if err != nil {
		return nil, err
	}
	st := &renderState{d: pr.d}
	out, err := p.execute(p.tmpl, pr, st, true)
	if err != nil {
		return nil, err
	}
	return &Rendered{Script: []byte(out), Assets: st.assets}, nil
}

// RenderOverlay renders the profile's overlay files for a machine. Secret
// values go in as they are (a munge key is binary); with no Secret
// resolver they read REDACTED.
func (p *Profile) RenderOverlay(d Data) ([]OverlayFile, error) {
	if len(p.overlay) == 0 {
		return nil, fmt.Errorf("profile %s has no overlay files", p.Name)
	}
	pr, err := p.prepare(d)
	if err != nil {
		return nil, err
	}
	var out []OverlayFile
	for i, t := range p.overlay {
		body, err := p.execute(t, pr, &renderState{d: pr.d}, false)
		if err != nil {
			return nil, err
		}
		out = append(out, OverlayFile{Path: p.Overlay[i].Path, Mode: p.modes[i], Data: []byte(body)})
	}
	return out, nil
}

// CheckParams checks a machine's parameters against the profile's
// declared choices (a value a render would refuse, said before it boots).
func (p *Profile) CheckParams(params map[string]string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(params)) {
		spec, ok := p.Params[k]
		if ok && len(spec.Choices) > 0 && params[k] != "" && !slices.Contains(spec.Choices, params[k]) {
			errs = append(errs, fmt.Errorf("profile %s: parameter %s is %q, not one of %s", p.Name, k, params[k], strings.Join(spec.Choices, ", ")))
		}
	}
	return errors.Join(errs...)
}

// RenderConfig renders the profile's config document for a machine. Secret
// values go in as they are; with no Secret resolver they read REDACTED.
func (p *Profile) RenderConfig(d Data) ([]byte, error) {
	if p.config == nil {
		return nil, fmt.Errorf("profile %s has no config document", p.Name)
	}
	pr, err := p.prepare(d)
	if err != nil {
		return nil, err
	}
	body, err := p.execute(p.config, pr, &renderState{d: pr.d}, false)
	if err != nil {
		return nil, err
	}
	return []byte(body), nil
}

// ConfigPath is the path, below the boot URL, of mac's config document
// for profile name.
func ConfigPath(mac, name string) string {
	return "/boot/" + mac + "/config?profile=" + name
}

// Safe reports whether v can stand on an iPXE script line without changing
// its meaning: no control characters (a newline would start a new command),
// no "$" (setting expansion), no "||"/"&&" tokens and no token starting with
// "#".
func Safe(v string) error {
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("value %q contains a control character, which iPXE would treat as a command break", v)
		}
		if r == '$' {
			return fmt.Errorf("value %q contains '$', which iPXE would expand as a setting", v)
		}
	}
	for _, tok := range strings.Fields(v) {
		if tok == "||" || tok == "&&" || strings.HasPrefix(tok, "#") {
			return fmt.Errorf("value %q contains the token %q, which iPXE would read as script syntax", v, tok)
		}
	}
	return nil
}

func funcs(st *renderState) template.FuncMap {
	return template.FuncMap{
		// asset turns a parameter value into a URL: http(s) URLs stay as
		// they are, anything else is a file under provisiond's /assets/.
		"asset": func(v string) (string, error) {
			if v == "" {
				return "", errors.New("asset: empty file name")
			}
			if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") {
				if _, err := url.Parse(v); err != nil {
					return "", fmt.Errorf("asset URL %q: %w", v, err)
				}
				return v, nil
			}
			clean := path.Clean("/" + v)
			if strings.Contains(v, "..") || clean == "/" {
				return "", fmt.Errorf("asset %q must be a file below the assets directory", v)
			}
			st.assets = append(st.assets, strings.TrimPrefix(clean, "/"))
			u := url.URL{Path: "/assets" + clean, RawQuery: url.Values{"mac": {st.d.MAC}}.Encode()}
			return st.d.BaseURL + u.String(), nil
		},
		// join joins the non-empty string arguments with single spaces;
		// anything else (false from an "and") is skipped.
		"join": func(words ...any) string {
			var out []string
			for _, w := range words {
				if s, ok := w.(string); ok && strings.TrimSpace(s) != "" {
					out = append(out, strings.TrimSpace(s))
				}
			}
			return strings.Join(out, " ")
		},
		// split splits v at sep and drops empty, trimmed parts.
		"split": func(v, sep string) []string {
			var out []string
			for _, p := range strings.Split(v, sep) {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
			return out
		},
		// configURL is the URL of the machine's config document (with
		// the boot's nonce, which only an admitted boot gets).
		"configURL": func() (string, error) {
			if st.d.ConfigURL == nil {
				return st.d.BaseURL + ConfigPath(st.d.MAC, st.d.Profile) + "&nonce=" + Redacted, nil
			}
			return st.d.ConfigURL()
		},
		// extra returns a provider's value, failing clearly when the
		// provider gave none.
		"extra": func(provider, key string) (string, error) {
			v, ok := st.d.Extra[provider][key]
			if !ok {
				return "", fmt.Errorf("%s: no value for %s", provider, key)
			}
			return v, nil
		},
	}
}
