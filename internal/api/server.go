// Package api is provisiond's JSON HTTP API (server side and the client the
// CLI uses). Mutating calls need the daemon's API token.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/netutil"
	"github.com/provisiond/provisiond/internal/profile"
)

// Store is what the API needs of the inventory.
type Store interface {
	Machine(name string) (*inventory.Machine, error)
	Machines() ([]inventory.Machine, error)
	// WriteMachines writes the machines q picks to w as a JSON array
	// (see inventory.Store.WriteMachines).
	WriteMachines(w io.Writer, q inventory.ListQuery) (next string, err error)
	PutMachine(m inventory.Machine) (*inventory.Machine, error)
	UpdateMachine(name string, fn func(m *inventory.Machine) error) (*inventory.Machine, error)
	DeleteMachine(name string) error
	Events(name string, after uint64, limit int) ([]events.Event, error)
}

// Renderer renders a machine's script as it would boot now.
type Renderer interface {
	// Render renders machine m's script for mac; secrets are real only
	// when reveal is set.
	Render(ctx context.Context, m *inventory.Machine, mac, baseURL string, reveal bool) ([]byte, string, error)
	// Profiles returns the current profiles.
	Profiles() *profile.Set
}

// Secrets is the daemon's secret store.
type Secrets interface {
	SetSecret(name, value string) error
	Secrets() ([]inventory.SecretInfo, error)
	DeleteSecret(name string) error
}

// Server serves /api/v1.
type Server struct {
	Store    Store
	Hardware Hardware
	// AuditConfig gives the configured roles and model figures.
	AuditConfig AuditConfig
	// Revision, when set, changes whenever anything an audit reads
	// changes in the store; ok false says it cannot tell (a store other
	// processes write), and Audit is not cached.
	Revision func() (rev uint64, ok bool)
	Renderer Renderer
	Secrets  Secrets
	Assets   Assets
	// BMC runs power, boot-device and inventory calls (nil: none).
	BMC BMC
	// Enclosures syncs enclosures from their OAs (nil: not offered).
	Enclosures Enclosures
	Broker     *events.Broker
	// Events receives operator actions for the machines' timelines.
	Events events.Sink
	// Token authorises mutating calls.
	Token string
	// ReadAccess says who reads without the token: "local" (loopback
	// clients that came straight, with no proxy's forwarding headers),
	// "token" (nobody) or "open" (everybody; also when empty).
	ReadAccess string
	// BaseURL is the HTTP base URL machines reach provisiond at (for
	// profile render).
	BaseURL func() string
	// Status returns daemon counters for GET /api/v1/status.
	Status func() map[string]any
	// Log is the logger.
	Log *slog.Logger
	// Closing, when closed, ends live event streams (daemon shutdown).
	Closing <-chan struct{}
	// Backup writes a backup archive of the running daemon to w (nil:
	// backups are not offered).
	Backup func(w io.Writer) error
	// BootProof checks a boot's nonce for a facts report sent without
	// the token (mac and nonce from the machine's boot, src its address)
	// and returns the machine's name (nil: only the token is accepted).
	BootProof func(mac, nonce string, src netip.Addr) (string, error)
	// Preflight checks a machine about to boot a newly assigned profile
	// (the Talos extension names its schematic would have). An error
	// refuses the assignment; a warning (a check that could not be made)
	// goes back in a Warning header (nil: no checks).
	Preflight func(ctx context.Context, m inventory.Machine) (warning string, err error)
	// BootInfo says how a machine boots with its profile now (firmware,
	// Talos schematic); nil answers with the profile only.
	BootInfo func(m inventory.Machine) (BootInfo, error)
	// Slurm carries out slurmctld's power saving requests (nil: not
	// offered).
	Slurm SlurmPower
	// SlurmToken returns the token scoped to Slurm's power saving ("":
	// none made yet).
	SlurmToken func() string

	sessMu   sync.Mutex
	sessions map[string]session // dashboard sessions by ID
	audits   auditCache
	machines machinesCache
}

// Register adds the API routes under /api/v1/ to outer, behind the read
// policy (ReadGuard).
func (s *Server) Register(outer *http.ServeMux) {
	mux := http.NewServeMux()
	outer.Handle("/api/v1/", s.ReadGuard(mux))
	mux.HandleFunc("GET /api/v1/status", s.status)
	mux.HandleFunc("GET /api/v1/machines", s.listMachines)
	mux.HandleFunc("POST /api/v1/machines", s.auth(s.createMachine))
	mux.HandleFunc("GET /api/v1/machines/{name}", s.getMachine)
	mux.HandleFunc("PUT /api/v1/machines/{name}", s.auth(s.putMachine))
	mux.HandleFunc("DELETE /api/v1/machines/{name}", s.auth(s.deleteMachine))
	mux.HandleFunc("POST /api/v1/machines/{name}/assign", s.auth(s.assign))
	mux.HandleFunc("POST /api/v1/machines/{name}/reprovision", s.auth(s.reprovision))
	mux.HandleFunc("GET /api/v1/machines/{name}/events", s.machineEvents)
	mux.HandleFunc("GET /api/v1/machines/{name}/script", s.script)
	mux.HandleFunc("GET /api/v1/machines/{name}/boot", s.bootInfo)
	mux.HandleFunc("GET /api/v1/events", s.allEvents)
	mux.HandleFunc("GET /api/v1/profiles", s.listProfiles)
	mux.HandleFunc("GET /api/v1/profiles/{name}", s.getProfile)
	mux.HandleFunc("GET /api/v1/assets", s.listAssets)
	mux.HandleFunc("POST /api/v1/assets/pull", s.auth(s.pullAssets))
	mux.HandleFunc("GET /api/v1/secrets", s.listSecrets)
	mux.HandleFunc("PUT /api/v1/secrets/{name}", s.auth(s.putSecret))
	mux.HandleFunc("DELETE /api/v1/secrets/{name}", s.auth(s.deleteSecret))
	mux.HandleFunc("GET /api/v1/backup", s.auth(s.backup))
	mux.HandleFunc("POST /api/v1/enclosures/{name}/sync", s.auth(s.syncEnclosure))
	s.registerSlurm(mux)
	s.registerHardware(mux)
	s.registerBMC(mux)
	// Go's profiler, for finding out where time and memory go (BENCHMARKS.md):
	// token always, as a goroutine dump or a heap profile shows internals.
	for path, h := range map[string]http.HandlerFunc{"": pprof.Index, "cmdline": pprof.Cmdline,
		"profile": pprof.Profile, "symbol": pprof.Symbol, "trace": pprof.Trace} {
		outer.HandleFunc("GET /debug/pprof/"+path, s.needsToken("profiling", h))
	}
}

// ReadGuard applies the read policy to GET and HEAD requests (other
// methods pass: each mutating route checks the token itself).
func (s *Server) ReadGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !s.mayRead(r) {
			writeJSON(w, http.StatusUnauthorized, Error{Error: "reading from another host " + needToken + " (or set http.read_access: open)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) mayRead(r *http.Request) bool {
	switch s.ReadAccess {
	case "", "open":
		return true
	case "local":
		// Loopback that came straight: a reverse proxy on this host
		// connects from loopback for everyone, and says so in its headers.
		if src := netutil.SourceAddr(r); src.IsLoopback() && !forwarded(r) {
			return true
		}
	}
	return s.authorized(r)
}

// Error is the JSON body of every API error.
type Error struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, inventory.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, inventory.ErrUnavailable):
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, Error{Error: err.Error()})
}

var errBadRequest = errors.New("bad request")

func (s *Server) authorized(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); h != "" {
		got := strings.TrimPrefix(h, "Bearer ")
		return s.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) == 1
	}
	return s.validSession(r)
}

const needToken = "needs the API token: pass --token, set PROVISIOND_TOKEN, or run the CLI on the daemon's host as a user who can read the token file"

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return s.needsToken("this call changes the inventory and", next)
}

// needsToken refuses a request without the API token, saying what (what)
// needs it.
func (s *Server) needsToken(what string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, Error{Error: what + " " + needToken})
			return
		}
		next(w, r)
	}
}

// backup streams a backup archive. It always needs the token: the archive
// holds the sealed secrets and the key that opens them.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if s.Backup == nil {
		writeJSON(w, http.StatusNotImplemented, Error{Error: "this daemon offers no backups"})
		return
	}
	cw := &startedWriter{w: w}
	if err := s.Backup(cw); err != nil {
		s.Log.Error("backup failed", "err", err)
		if !cw.started {
			writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
			return
		}
		// The archive is half sent: break the stream, so the client's
		// copy fails rather than ending short.
		panic(http.ErrAbortHandler)
	}
	s.Log.Info("backup written", "client", r.RemoteAddr)
}

// startedWriter sets the archive's headers on the first write and
// remembers that the answer has started.
type startedWriter struct {
	w       http.ResponseWriter
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/gzip")
		s.w.Header().Set("Content-Disposition", `attachment; filename="provisiond-backup.tar.gz"`)
	}
	return s.w.Write(p)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := map[string]any{}
	if s.Status != nil {
		st = s.Status()
	}
	writeJSON(w, http.StatusOK, st)
}

// listMachines answers GET /api/v1/machines: every machine, or those of
// ?enclosure= and ?label=, a page of ?limit= after ?after= (the next page
// named in a Link header, rel="next"), with only the ?fields= (comma
// separated) of each record. It streams the stored records; ?machine=
// (names, each of which must exist) takes the slower path that checks them.
func (s *Server) listMachines(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	if len(qs["machine"]) > 0 {
		s.listNamedMachines(w, r)
		return
	}
	q := inventory.ListQuery{Enclosure: qs.Get("enclosure"), Label: qs.Get("label"), After: qs.Get("after")}
	if f := qs.Get("fields"); f != "" {
		q.Fields = strings.Split(f, ",")
	}
	if l := qs.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			writeErr(w, fmt.Errorf("limit %q is not a positive number of machines: %w", l, errBadRequest))
			return
		}
		q.Limit = n
	}
	w.Header().Set("Content-Type", "application/json")
	if q.Limit > 0 {
		// A page is small: held until its next page is known (a header).
		var buf bytes.Buffer
		next, err := s.Store.WriteMachines(&buf, q)
		if err != nil {
			writeErr(w, err)
			return
		}
		if next != "" {
			nq := url.Values{}
			for k, v := range qs {
				nq[k] = v
			}
			nq.Set("after", next)
			w.Header().Set("Link", "</api/v1/machines?"+nq.Encode()+`>; rel="next"`)
		}
		w.Write(buf.Bytes())
		return
	}
	cw := &countWriter{w: w}
	if _, err := s.Store.WriteMachines(cw, q); err != nil {
		if cw.n > 0 {
			// Part of the list went out as 200: end the response broken,
			// so no client takes it for the whole list.
			s.Log.Error("listing machines failed midway", "err", err)
			panic(http.ErrAbortHandler)
		}
		writeErr(w, err)
	}
}

// countWriter counts what went through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// listNamedMachines lists the machines ?machine= names (and the other
// selectors narrow), decoded and checked: a name that matches no machine
// is a 404 naming it.
func (s *Server) listNamedMachines(w http.ResponseWriter, r *http.Request) {
	ms, err := s.Store.Machines()
	if err != nil {
		writeErr(w, err)
		return
	}
	if ms, err = selectMachines(ms, r); err != nil {
		writeErr(w, err)
		return
	}
	if ms == nil {
		ms = []inventory.Machine{}
	}
	writeJSON(w, http.StatusOK, ms)
}

func decodeMachine(r *http.Request) (inventory.Machine, error) {
	var m inventory.Machine
	return m, decodeBody(r, "machine", 1<<20, &m)
}

func (s *Server) createMachine(w http.ResponseWriter, r *http.Request) {
	m, err := decodeMachine(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if old, err := s.Store.Machine(m.Name); err == nil && !old.Discovered {
		writeErr(w, fmt.Errorf("machine %s already exists: change it with provisiond machine set: %w", m.Name, inventory.ErrConflict))
		return
	}
	// Facts are what machines report, never what a client says.
	m.Discovered, m.Facts, m.Observed = false, nil, nil
	if err := s.check(&m); err != nil {
		writeErr(w, err)
		return
	}
	if !s.preflight(w, r, m) {
		return
	}
	saved, err := s.Store.PutMachine(m)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.saved(nil, saved)
	writeJSON(w, http.StatusCreated, saved)
}

// putMachine replaces a machine's record with the client's, in one
// transaction and only if the record is still the revision the client
// read: a one-shot assignment used up by a boot meanwhile is never
// brought back. What the store and the boots maintain stays theirs: facts,
// observed hardware, and the one-shot state (POST assign sets it; a new
// profile ends it).
func (s *Server) putMachine(w http.ResponseWriter, r *http.Request) {
	m, err := decodeMachine(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if m.Name != r.PathValue("name") {
		writeErr(w, fmt.Errorf("the machine's name %q does not match the URL's %q: %w", m.Name, r.PathValue("name"), errBadRequest))
		return
	}
	if err := s.check(&m); err != nil {
		writeErr(w, err)
		return
	}
	// What the boot depends on is checked again only when it changes (a
	// hostname or a label asks the Image Factory nothing).
	if cur, err := s.Store.Machine(m.Name); err != nil || cur.Profile != m.Profile ||
		!maps.Equal(cur.Params, m.Params) || !reflect.DeepEqual(cur.NICs, m.NICs) {
		if !s.preflight(w, r, m) {
			return
		}
	}
	s.update(w, m.Name, func(cur *inventory.Machine) error {
		if m.Revision != cur.Revision {
			return fmt.Errorf("machine %s changed since it was read (revision %d, now %d: a boot, the agent or another operator): read it again and repeat the change: %w",
				m.Name, m.Revision, cur.Revision, inventory.ErrConflict)
		}
		once := cur.Once
		if m.Profile != cur.Profile {
			once = nil
		}
		facts, observed := cur.Facts, cur.Observed
		*cur = m
		cur.Once, cur.Facts, cur.Observed, cur.Discovered = once, facts, observed, false
		return nil
	})
}

// update changes machine name in one transaction (fn edits the stored
// record in place) and answers with the result.
func (s *Server) update(w http.ResponseWriter, name string, fn func(m *inventory.Machine) error) {
	var before inventory.Machine
	saved, err := s.Store.UpdateMachine(name, func(m *inventory.Machine) error {
		before = *m
		return fn(m)
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	s.saved(&before, saved)
	writeJSON(w, http.StatusOK, saved)
}

// check validates a machine from a client and its profile.
func (s *Server) check(m *inventory.Machine) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, errBadRequest)
	}
	if m.Profile != "" {
		p, ok := s.Renderer.Profiles().Get(m.Profile)
		if !ok {
			return fmt.Errorf("profile %s does not exist (provisiond profile list shows the profiles): %w", m.Profile, errBadRequest)
		}
		if err := p.CheckParams(m.Params); err != nil {
			return fmt.Errorf("machine %s: %v: %w", m.Name, err, errBadRequest)
		}
	}
	return nil
}

// checkAssignment checks machine m before it boots its profile: the
// profile's parameter choices, then the Preflight hook. An error refuses
// the change (bad request); a warning is a check that could not be made.
func (s *Server) checkAssignment(ctx context.Context, m inventory.Machine) (warning string, err error) {
	if p, ok := s.Renderer.Profiles().Get(m.Profile); ok {
		if err := p.CheckParams(m.Params); err != nil {
			return "", fmt.Errorf("machine %s: %v: %w", m.Name, err, errBadRequest)
		}
	}
	if s.Preflight == nil || m.Profile == "" {
		return "", nil
	}
	warning, err = s.Preflight(ctx, m)
	if err != nil {
		return "", fmt.Errorf("machine %s, profile %s: %v: %w", m.Name, m.Profile, err, errBadRequest)
	}
	if warning != "" {
		s.Log.Warn("assignment not fully checked", "machine", m.Name, "profile", m.Profile, "warning", warning)
	}
	return warning, nil
}

// preflight is checkAssignment for a handler: it answers the request and
// returns false when m may not be stored, and puts a warning in a Warning
// header.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request, m inventory.Machine) bool {
	warning, err := s.checkAssignment(r.Context(), m)
	if err != nil {
		writeErr(w, err)
		return false
	}
	warn(w, warning)
	return true
}

// warn adds a Warning header (299 provisiond "text") when text is set.
func warn(w http.ResponseWriter, text string) {
	if text != "" {
		w.Header().Add("Warning", `299 provisiond "`+strings.NewReplacer(`"`, "'", `\`, "/", "\n", " ").Replace(text)+`"`)
	}
}

// saved logs a stored machine and puts an assignment change (profile,
// one-shot) on its timeline; old is the record before (nil: new).
func (s *Server) saved(old, saved *inventory.Machine) {
	s.Log.Info("machine saved", "machine", saved.Name, "profile", saved.Profile)
	if s.Events != nil && (old == nil || old.Discovered || old.Profile != saved.Profile || (old.Once == nil) != (saved.Once == nil)) {
		attrs := map[string]string{"profile": saved.Profile}
		if saved.Profile == "" {
			attrs["profile"] = "(default)"
		}
		if saved.Once != nil {
			attrs["once"] = "true"
			attrs["then"] = saved.Once.Then
		}
		s.Events.Emit(events.Event{Type: events.MachineChanged, Machine: saved.Name, Attrs: attrs})
	}
}

func (s *Server) getMachine(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.Machine(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) deleteMachine(w http.ResponseWriter, r *http.Request) {
	if err := s.Store.DeleteMachine(r.PathValue("name")); err != nil {
		writeErr(w, err)
		return
	}
	s.Log.Info("machine removed", "machine", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) script(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.Machine(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	// A machine known only by its hardware (imported, no NIC recorded
	// yet) renders with the zero MAC in its URLs, and says so.
	mac, note := "00:00:00:00:00:00", ""
	if len(m.MACs) > 0 {
		mac = m.MACs[0]
	} else {
		note = fmt.Sprintf("# provisiond: %s has no MAC yet: rendered with %s in its URLs (add one: provisiond machine set %s --add-mac MAC)\n", m.Name, mac, m.Name)
	}
	if q := r.URL.Query().Get("mac"); q != "" {
		if mac, err = inventory.NormalizeMAC(q); err != nil {
			writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
			return
		}
		note = ""
	}
	reveal := r.URL.Query().Get("reveal") == "1"
	if reveal && !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, Error{Error: "showing secrets " + needToken})
		return
	}
	body, _, err := s.Renderer.Render(r.Context(), m, mac, s.BaseURL(), reveal)
	if err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if note != "" {
		// After the script's #!ipxe line, where iPXE reads a comment.
		first, rest, _ := strings.Cut(string(body), "\n")
		body = []byte(first + "\n" + note + rest)
	}
	w.Write(body)
}

// ProfileInfo is a profile as the API shows it.
type ProfileInfo struct {
	Name        string                   `json:"name" yaml:"name"`
	Description string                   `json:"description" yaml:"description"`
	Source      string                   `json:"source" yaml:"source"`
	ConsumedOn  string                   `json:"consumed_on" yaml:"consumed_on"`
	Params      map[string]profile.Param `json:"params,omitempty" yaml:"params,omitempty"`
	Template    string                   `json:"template,omitempty" yaml:"template,omitempty"`
}

func info(p *profile.Profile, withTemplate bool) ProfileInfo {
	pi := ProfileInfo{Name: p.Name, Description: p.Description, Source: p.Source, ConsumedOn: p.ConsumedOn, Params: p.Params}
	if withTemplate {
		pi.Template = p.Template
	}
	return pi
}

func (s *Server) listProfiles(w http.ResponseWriter, r *http.Request) {
	out := []ProfileInfo{}
	for _, p := range s.Renderer.Profiles().List() {
		out = append(out, info(p, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getProfile(w http.ResponseWriter, r *http.Request) {
	p, ok := s.Renderer.Profiles().Get(r.PathValue("name"))
	if !ok {
		writeErr(w, fmt.Errorf("profile %s: %w", r.PathValue("name"), inventory.ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, info(p, true))
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	list, err := s.Secrets.Secrets()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeErr(w, fmt.Errorf("secret value: %v (64 KiB at most): %w", err, errBadRequest))
		return
	}
	if len(raw) == 0 {
		writeErr(w, fmt.Errorf("secret value is empty: %w", errBadRequest))
		return
	}
	if err := s.Secrets.SetSecret(r.PathValue("name"), string(raw)); err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	s.Log.Info("secret stored", "secret", r.PathValue("name"))
	writeJSON(w, http.StatusOK, map[string]string{"name": r.PathValue("name")})
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request) {
	if err := s.Secrets.DeleteSecret(r.PathValue("name")); err != nil {
		writeErr(w, err)
		return
	}
	s.Log.Info("secret removed", "secret", r.PathValue("name"))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) machineEvents(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.Store.Machine(name); err != nil {
		writeErr(w, err)
		return
	}
	s.streamEvents(w, r, name)
}

func (s *Server) allEvents(w http.ResponseWriter, r *http.Request) {
	s.streamEvents(w, r, "")
}

// streamEvents writes the stored timeline (for one machine) as a JSON array,
// or with follow=1 as newline-delimited JSON that continues live until the
// client goes away.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	if name != "" {
		// An asset tag names the machine's timeline too; live steps carry
		// the machine's name.
		m, err := s.Store.Machine(name)
		if err != nil {
			writeErr(w, err)
			return
		}
		name = m.Name
	}
	var sub <-chan events.Event
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if follow {
		sub = s.Broker.Subscribe(ctx, name)
	}
	var past []events.Event
	if name != "" {
		var err error
		if past, err = s.Store.Events(name, after, limit); err != nil {
			writeErr(w, err)
			return
		}
	}
	if !follow {
		if past == nil {
			past = []events.Event{}
		}
		writeJSON(w, http.StatusOK, past)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	last := after
	for _, ev := range past {
		enc.Encode(ev)
		last = ev.Seq
	}
	if fl != nil {
		fl.Flush()
	}
	flush := func() error {
		if fl != nil {
			fl.Flush()
		}
		return nil
	}
	events.Relay(ctx, sub, last, s.Closing, 15*time.Second, func(ev events.Event) error {
		if err := enc.Encode(ev); err != nil {
			return err
		}
		return flush()
	}, func() error {
		// A blank line keeps proxies and idle timeouts from closing the
		// stream; clients skip it.
		if _, err := w.Write([]byte("\n")); err != nil {
			return err
		}
		return flush()
	})
}
