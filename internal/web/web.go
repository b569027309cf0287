// Package web serves provisiond's dashboard: server-rendered HTML pages
// over the inventory and timelines, with a little plain JavaScript for live
// timelines (server-sent events) and for actions, which go to the JSON API
// under the API token. Templates and static files are embedded in the
// binary; there is no build step.
package web

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/audit"
	enclsync "github.com/provisiond/provisiond/internal/enclosure"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

//go:embed templates static
var files embed.FS

// Server serves the dashboard under /ui/.
type Server struct {
	// API is the daemon's API server: the dashboard reads through its
	// stores, and its pages act through the API's routes, under the API's
	// token and read policy.
	API *api.Server
	// Log is the logger.
	Log *slog.Logger

	pages map[string]*template.Template
}

// New parses the embedded templates.
func New(a *api.Server, log *slog.Logger) (*Server, error) {
	s := &Server{API: a, Log: log, pages: map[string]*template.Template{}}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(n[len("templates/"):], ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("dashboard template %s: %w", n, err)
		}
		s.pages[base] = t
	}
	return s, nil
}

var funcs = template.FuncMap{
	"gb": func(v float64) string {
		if v == 0 {
			return "?"
		}
		return strconv.FormatFloat(v, 'g', -1, 64) + " GB"
	},
	"dash":  func(s string) string { return cmp.Or(s, "—") },
	"join":  strings.Join,
	"lower": strings.ToLower,
	"clock": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.Local().Format("2006-01-02 15:04:05.000")
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"labels": func(m map[string]string) string {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			kv = append(kv, k+"="+m[k])
		}
		return strings.Join(kv, " ")
	},
	"list": func(s ...string) []string { return s },
}

// stallAfter is how long a boot may go without a new step before the
// dashboard calls it stalled.
const stallAfter = events.StallAfter

// Register adds the dashboard's routes to mux: / redirects to /ui/.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	mux.HandleFunc("GET /ui/{$}", s.page(s.overview))
	mux.HandleFunc("GET /ui/machines/{name}", s.page(s.machine))
	mux.HandleFunc("GET /ui/audit", s.page(s.audit))
	mux.HandleFunc("GET /ui/plan", s.page(s.plan))
	mux.HandleFunc("GET /ui/events", s.readable(s.stream))
	mux.HandleFunc("GET /ui/machines/{name}/events", s.readable(s.stream))
	mux.HandleFunc("GET /ui/login", s.loginPage)
	mux.HandleFunc("POST /ui/login", s.login)
	mux.HandleFunc("POST /ui/logout", s.logout)
	static, _ := fs.Sub(files, "static")
	fileServer := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.Handle("GET /ui/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		securityHeaders(w)
		fileServer.ServeHTTP(w, r)
	}))
}

// securityHeaders keeps the pages to their own scripts and styles, out of
// other sites' frames, and their addresses out of other sites' logs.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// view is what every page's layout needs: the title, the navigation entry
// to mark, whether the browser holds a session (actions enabled), the
// page's own path (to come back to after signing in) and the page's data.
type view struct {
	Title    string
	Nav      string
	SignedIn bool
	Path     string
	Data     any
}

// handlerFunc renders one page: it returns the template's name and view.
type handlerFunc func(r *http.Request, v *view) (string, int, error)

// page applies the read policy (a browser that may not read is sent to
// sign in) and renders the page.
func (s *Server) page(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.API.MayRead(r) {
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
			return
		}
		v := &view{SignedIn: s.API.Authorized(r), Path: r.URL.RequestURI()}
		name, status, err := h(r, v)
		if err != nil {
			s.fail(w, r, status, err)
			return
		}
		s.render(w, status, name, v)
	}
}

// readable applies the read policy to a non-page route.
func (s *Server) readable(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.API.MayRead(r) {
			http.Error(w, "sign in with the API token to read the dashboard", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (s *Server) render(w http.ResponseWriter, status int, name string, v *view) {
	var b bytes.Buffer
	if err := s.pages[name].Execute(&b, v); err != nil {
		s.Log.Error("rendering a dashboard page failed", "page", name, "err", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	s.render(w, status, "error", &view{Title: http.StatusText(status), SignedIn: s.API.Authorized(r), Path: r.URL.RequestURI(), Data: err.Error()})
}

// statusOf says how a store error maps to an HTTP status.
func statusOf(err error) int {
	if errors.Is(err, inventory.ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// row is one machine as the lists and bays show it: the few fields they
// print, copied out of the machine (a template reads a field of a small
// struct far faster than one of a Machine's).
type row struct {
	m                      *inventory.Machine
	Name, Tag, Role, Model string
	Profile                string // "default" when none is set
	Once, Discovered       bool
	Bay                    int
	Location               string
	State                  string
	StateText              string
	Power                  string
	Match                  bool
}

// bay is one bay of an enclosure's front.
type bay struct {
	Bay int
	Row *row
	// OA is the blade as the OA reported it at the last sync.
	OA *enclsync.Bay
}

// enclosure is an enclosure drawn as its front: rows of bays.
type enclosure struct {
	System  inventory.System
	Rows    [][]bay
	Running int
	Fitted  int
	// OA is what its Onboard Administrator said at the last sync (nil:
	// no sync since the daemon started).
	OA *enclsync.Report
}

// filter is the overview's selection.
type filter struct {
	Role, Label, State string
}

func (f filter) active() bool { return f.Role != "" || f.Label != "" || f.State != "" }

func (f filter) match(r *row) bool {
	if f.Role != "" && r.Role != f.Role {
		return false
	}
	if f.State != "" && r.State != f.State {
		return false
	}
	return inventory.Selector{Label: f.Label}.Matches(r.m)
}

// overviewData is the machines page.
type overviewData struct {
	Enclosures []enclosure
	Others     []*row
	Filter     filter
	Filtered   bool
	Roles      []string
	Labels     []string
	States     []string
	Counts     []stateCount
	Total      int
	Shown      int
}

type stateCount struct {
	State string
	N     int
}

// timelineDepth is how many recent steps a status is derived from.
const timelineDepth = 100

func (s *Server) rowFor(m inventory.Machine, now time.Time) *row {
	evs, _ := s.API.Store.Events(m.Name, 0, timelineDepth)
	st := events.DeriveStatus(evs)
	return s.rowWith(m, &st, now)
}

func (s *Server) rowWith(m inventory.Machine, st *events.Status, now time.Time) *row {
	r := &row{m: &m, Name: m.Name, Tag: m.Tag, Role: m.Role, Model: strings.TrimSpace(m.Vendor + " " + m.Model),
		Profile: cmp.Or(m.Profile, "default"), Once: m.Once != nil && m.Profile != "", Discovered: m.Discovered, Bay: m.Bay,
		State: st.At(now, stallAfter), StateText: st.Text(now, stallAfter), Power: st.Power, Match: true}
	switch {
	case m.Enclosure != "":
		r.Location = fmt.Sprintf("%s bay %d", m.Enclosure, m.Bay)
	case m.Rack != "":
		r.Location = fmt.Sprintf("%s U%d", m.Rack, m.Unit)
	}
	return r
}

func (s *Server) overview(r *http.Request, v *view) (string, int, error) {
	ms, err := s.API.Machines()
	if err != nil {
		return "", 0, err
	}
	systems, err := s.API.Hardware.Systems()
	if err != nil {
		return "", 0, err
	}
	q := r.URL.Query()
	d := &overviewData{Filter: filter{Role: q.Get("role"), Label: q.Get("label"), State: q.Get("state")}, States: events.States(), Total: len(ms)}
	d.Filtered = d.Filter.active()
	now := time.Now()
	roles, labels, counts := map[string]bool{}, map[string]bool{}, map[string]int{}
	byBay := map[string]map[int]*row{}
	encl := map[string]bool{}
	for _, sys := range systems {
		if sys.Kind == inventory.KindEnclosure {
			encl[sys.Name] = true
		}
	}
	for _, m := range ms {
		rw := s.rowFor(m, now)
		rw.Match = d.Filter.match(rw)
		if rw.Match {
			d.Shown++
		}
		counts[rw.State]++
		if m.Role != "" {
			roles[m.Role] = true
		}
		for k, val := range m.Labels {
			labels[k+"="+val] = true
		}
		if m.Enclosure != "" && encl[m.Enclosure] && m.Bay > 0 {
			if byBay[m.Enclosure] == nil {
				byBay[m.Enclosure] = map[int]*row{}
			}
			if byBay[m.Enclosure][m.Bay] == nil {
				byBay[m.Enclosure][m.Bay] = rw
				continue
			}
		}
		if rw.Match {
			d.Others = append(d.Others, rw)
		}
	}
	for _, sys := range systems {
		if sys.Kind != inventory.KindEnclosure {
			continue
		}
		e := enclosure{System: sys}
		oaBays := map[int]*enclsync.Bay{}
		if s.API.Enclosures != nil {
			if e.OA = s.API.Enclosures.Last(sys.Name); e.OA != nil {
				for i := range e.OA.Bays {
					oaBays[e.OA.Bays[i].Bay] = &e.OA.Bays[i]
				}
			}
		}
		// A c7000 has 16 half-height bays in two rows of eight; an
		// enclosure of more than eight bays is drawn in two rows.
		perRow := sys.Bays
		if sys.Bays > 8 {
			perRow = (sys.Bays + 1) / 2
		}
		for b := 1; b <= sys.Bays; b++ {
			if (b-1)%perRow == 0 {
				e.Rows = append(e.Rows, nil)
			}
			rw := byBay[sys.Name][b]
			if rw != nil {
				e.Fitted++
				if rw.Power == "on" {
					e.Running++
				}
			}
			e.Rows[len(e.Rows)-1] = append(e.Rows[len(e.Rows)-1], bay{Bay: b, Row: rw, OA: oaBays[b]})
		}
		d.Enclosures = append(d.Enclosures, e)
	}
	d.Roles = slices.Sorted(maps.Keys(roles))
	d.Labels = slices.Sorted(maps.Keys(labels))
	for _, st := range events.States() {
		if counts[st] > 0 {
			d.Counts = append(d.Counts, stateCount{State: st, N: counts[st]})
		}
	}
	v.Title, v.Nav, v.Data = "Machines", "machines", d
	return "machines", http.StatusOK, nil
}

// step is one timeline row.
type step struct {
	Ev    events.Event
	Delta string
}

// machineData is a machine's page.
type machineData struct {
	Row       *row
	M         *inventory.Machine
	Profiles  []profileChoice
	Report    *audit.MachineReport
	Findings  []audit.Finding
	Drift     []string
	DIMMSlots int
	Password  string
	Steps     []step
	LastSeq   uint64
	History   []inventory.Change
	// Boot is how it boots now: firmware (and why), Talos schematic.
	Boot *api.BootInfo
	// Control is what powers it and sets its next boot (bmc, oa, "":
	// nothing); Locate says its enclosure's OA can blink its UID LED.
	Control string
	Locate  bool
}

type profileChoice struct {
	Name, Description string
}

// timelineShown is how many steps the machine page lists.
const timelineShown = 200

func (s *Server) machine(r *http.Request, v *view) (string, int, error) {
	name := r.PathValue("name")
	m, err := s.API.Store.Machine(name)
	if err != nil {
		return "", statusOf(err), fmt.Errorf("machine %s: %w", name, err)
	}
	evs, err := s.API.Store.Events(name, 0, timelineShown)
	if err != nil {
		return "", 0, err
	}
	now := time.Now()
	st := events.DeriveStatus(evs)
	d := &machineData{M: m, Row: s.rowWith(*m, &st, now), Drift: audit.Drift(m)}
	if len(evs) > 0 {
		d.LastSeq = evs[len(evs)-1].Seq
	}
	// Newest first, each with the time since the step before it.
	for i := len(evs) - 1; i >= 0; i-- {
		sp := step{Ev: evs[i]}
		if i > 0 {
			sp.Delta = delta(evs[i].Time.Sub(evs[i-1].Time))
		}
		d.Steps = append(d.Steps, sp)
	}
	for _, p := range s.API.Renderer.Profiles().List() {
		d.Profiles = append(d.Profiles, profileChoice{Name: p.Name, Description: p.Description})
	}
	if s.API.BootInfo != nil {
		if bi, err := s.API.BootInfo(*m); err == nil {
			d.Boot = &bi
		}
	}
	if systems, err := s.API.Hardware.Systems(); err == nil {
		d.Control, _ = inventory.ControlledBy(m, systems)
		d.Locate = inventory.ManagedBy(m, systems) != nil
	}
	if m.BMC != nil {
		switch {
		case m.BMC.PasswordSecret != "":
			d.Password = "secret " + m.BMC.PasswordSecret
		case m.BMC.PasswordFile != "":
			d.Password = "file " + m.BMC.PasswordFile
		case m.BMC.PasswordEnv != "":
			d.Password = "environment variable " + m.BMC.PasswordEnv
		default:
			d.Password = "none set"
		}
	}
	if rep, in, err := s.API.Audit(); err == nil {
		for i := range rep.Machines {
			if rep.Machines[i].Name == m.Name {
				d.Report = &rep.Machines[i]
			}
		}
		for _, f := range rep.Sorted(audit.Info) {
			if f.Machine == m.Name {
				d.Findings = append(d.Findings, f)
			}
		}
		if mod, ok := audit.ModelFor(in.Models, m.Vendor, m.Model); ok {
			d.DIMMSlots = mod.DIMMSlots
		}
	}
	if h, err := s.API.Hardware.History(m.Name); err == nil {
		slices.Reverse(h)
		d.History = h[:min(len(h), 20)]
	}
	v.Title, v.Nav, v.Data = m.Name, "machines", d
	return "machine", http.StatusOK, nil
}

// auditData is the audit page.
type auditData struct {
	Report   *audit.Report
	Findings []audit.Finding
	Errors   int
	Warnings int
	Notes    int
	All      bool
}

func (s *Server) audit(r *http.Request, v *view) (string, int, error) {
	rep, _, err := s.API.Audit()
	if err != nil {
		return "", 0, err
	}
	c := rep.Counts()
	d := &auditData{Report: rep, Errors: c[audit.Error], Warnings: c[audit.Warning], Notes: c[audit.Info], All: r.URL.Query().Get("notes") == "1"}
	lowest := audit.Warning
	if d.All {
		lowest = audit.Info
	}
	d.Findings = rep.Sorted(lowest)
	v.Title, v.Nav, v.Data = "Audit", "audit", d
	return "audit", http.StatusOK, nil
}

// planData is the plan page.
type planData struct {
	Roles   []inventory.Role
	Targets []audit.Target
	Plan    *audit.Plan
	Error   string
}

// planRows is how many role rows the plan form offers.
const planRows = 4

func (s *Server) plan(r *http.Request, v *view) (string, int, error) {
	in, err := s.API.AuditInput()
	if err != nil {
		return "", 0, err
	}
	d := &planData{Roles: in.Roles}
	q := r.URL.Query()
	roles, counts := q["role"], q["count"]
	var problems []string
	for i, role := range roles {
		if role == "" || i >= len(counts) || counts[i] == "" {
			continue
		}
		n, err := strconv.Atoi(counts[i])
		if err != nil || n < 1 {
			problems = append(problems, fmt.Sprintf("%s: the count %q is not a whole number of at least 1", role, counts[i]))
			continue
		}
		d.Targets = append(d.Targets, audit.Target{Role: role, Count: n})
	}
	status := http.StatusOK
	switch {
	case len(problems) > 0:
		d.Error, status = strings.Join(problems, "; "), http.StatusBadRequest
	case len(d.Targets) > 0:
		if d.Plan, err = audit.MakePlan(in, d.Targets); err != nil {
			d.Error, status = err.Error(), http.StatusBadRequest
		}
	}
	for len(d.Targets) < planRows {
		d.Targets = append(d.Targets, audit.Target{})
	}
	v.Title, v.Nav, v.Data = "Plan", "plan", d
	return "plan", status, nil
}
