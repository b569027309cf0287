// Package profile loads boot profiles (an iPXE template plus a YAML sidecar)
// and renders them with values made safe for iPXE.
package profile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"text/template"

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
}

// Profile is a loaded, parsed profile.
type Profile struct {
	// Name is the file's base name (linux for linux.yaml + linux.ipxe).
	Name string `json:"name"`
	// Description is one line for listings and menus.
	Description string `json:"description"`
	// Params are the parameters the template reads.
	Params map[string]Param `json:"params,omitempty"`
	// Source says where the profile came from (builtin or a directory).
	Source string `json:"source"`
	// Template is the iPXE template text.
	Template string `json:"-"`

	tmpl *template.Template
}

type sidecar struct {
	Description string           `yaml:"description"`
	Params      map[string]Param `yaml:"params"`
}

// Set is a named collection of profiles.
type Set struct {
	profiles map[string]*Profile
}

// Load reads every profile in builtin, then every profile in dir (when dir
// is not empty), which replaces or adds to the built-in ones. Any error
// names the file.
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
	for _, yname := range names {
		name := strings.TrimSuffix(yname, ".yaml")
		p, err := loadOne(fsys, name, source)
		if err != nil {
			return err
		}
		s.profiles[name] = p
	}
	return nil
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
	body, err := fs.ReadFile(fsys, name+".ipxe")
	if err != nil {
		return nil, fmt.Errorf("profile %s: template %s: %w", name, where(name+".ipxe"), err)
	}
	if !bytes.HasPrefix(body, []byte("#!ipxe")) {
		return nil, fmt.Errorf("profile %s:1: an iPXE script must start with #!ipxe", where(name+".ipxe"))
	}
	p := &Profile{Name: name, Description: sc.Description, Params: sc.Params, Source: source, Template: string(body)}
	t, err := template.New(where(name + ".ipxe")).Option("missingkey=error").Funcs(funcStubs()).Parse(string(body))
	if err != nil {
		return nil, fmt.Errorf("profile %w", err)
	}
	p.tmpl = t
	return p, nil
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
	// ScriptURL is the machine's first-stage script (menus chain to it).
	ScriptURL string
	// Discovered is true for machines provisiond does not know yet.
	Discovered bool
}

// Render executes the profile with data. Missing required parameters and
// values that are unsafe for iPXE are errors that name the parameter.
func (p *Profile) Render(d Data) ([]byte, error) {
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
	for _, k := range keys {
		if p.Params[k].Required && params[k] == "" {
			return nil, fmt.Errorf("profile %s needs parameter %s: set it with provisiond machine set %s --param %s=VALUE", p.Name, k, d.Name, k)
		}
	}
	for k, v := range params {
		if err := Safe(v); err != nil {
			return nil, fmt.Errorf("parameter %s: %w", k, err)
		}
	}
	for field, v := range map[string]string{"name": d.Name, "hostname": d.Hostname, "kernel_args": d.KernelArgs, "address": d.IP, "gateway": d.Gateway} {
		if err := Safe(v); err != nil {
			return nil, fmt.Errorf("machine %s: %s: %w", d.Name, field, err)
		}
	}
	d.Params = params
	t, err := p.tmpl.Clone()
	if err != nil {
		return nil, err
	}
	t.Funcs(funcs(d))
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("rendering profile %s: %w", p.Name, err)
	}
	return buf.Bytes(), nil
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

func funcStubs() template.FuncMap {
	return funcs(Data{})
}

func funcs(d Data) template.FuncMap {
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
			u := url.URL{Path: "/assets" + clean, RawQuery: url.Values{"mac": {d.MAC}}.Encode()}
			return d.BaseURL + u.String(), nil
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
	}
}
