package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/netutil"
)

// Hardware is what the API needs of the inventory for hardware records.
type Hardware interface {
	Import(doc *inventory.Document, apply bool) (*inventory.ImportResult, error)
	Export() (*inventory.Document, error)
	Systems() ([]inventory.System, error)
	Parts() ([]inventory.Part, error)
	Roles() ([]inventory.Role, error)
	History(name string) ([]inventory.Change, error)
	AcceptObserved(name string) (*inventory.Machine, []inventory.FieldChange, error)
	Adopt(discovered, name string) (*inventory.Machine, []inventory.FieldChange, error)
	Observe(name string, obs inventory.Observed) (*inventory.Machine, []inventory.FieldChange, error)
}

// AuditConfig gives the configured roles and model figures.
type AuditConfig func() ([]inventory.Role, []audit.Model)

// FactsReport is what provisiond agent report posts.
type FactsReport struct {
	// Machine names the machine; empty means "find me by my NICs' MACs".
	Machine string `json:"machine,omitempty"`
	// Host is the reporting host's name.
	Host string `json:"host,omitempty"`
	// Hardware is what the agent found.
	Hardware inventory.Hardware `json:"hardware"`
	// BootMAC and BootNonce prove, instead of the API token, that the
	// report comes from a machine provisiond booted: its boot NIC and the
	// nonce of that boot (from provisiond.callback= on its kernel command
	// line). The report then lands on that machine.
	BootMAC   string `json:"boot_mac,omitempty"`
	BootNonce string `json:"boot_nonce,omitempty"`
}

// FactsResult is the answer to a facts report.
type FactsResult struct {
	Machine    string                  `json:"machine"`
	Discovered bool                    `json:"discovered"`
	Filled     []inventory.FieldChange `json:"filled"`
	Drift      []string                `json:"drift"`
}

// maxImport bounds an import body.
const maxImport = 16 << 20

func (s *Server) registerHardware(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/import", s.auth(s.importDoc))
	mux.HandleFunc("GET /api/v1/export", s.exportDoc)
	mux.HandleFunc("GET /api/v1/systems", s.listSystems)
	mux.HandleFunc("GET /api/v1/parts", s.listParts)
	mux.HandleFunc("GET /api/v1/roles", s.listRoles)
	mux.HandleFunc("GET /api/v1/audit", s.audit)
	mux.HandleFunc("GET /api/v1/audit/power", s.power)
	mux.HandleFunc("GET /api/v1/plan", s.plan)
	mux.HandleFunc("GET /api/v1/machines/{name}/history", s.history)
	mux.HandleFunc("POST /api/v1/machines/{name}/accept", s.auth(s.accept))
	mux.HandleFunc("POST /api/v1/machines/{name}/adopt", s.auth(s.adopt))
	// Open like the boot endpoints: a freshly booted machine has no token.
	// Reports only ever fill empty fields and record what was observed.
	mux.HandleFunc("POST /api/v1/facts", s.facts)
}

func (s *Server) importDoc(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxImport))
	if err != nil {
		writeErr(w, fmt.Errorf("reading the file: %v (at most %d MiB): %w", err, maxImport>>20, errBadRequest))
		return
	}
	var doc *inventory.Document
	if r.URL.Query().Get("format") == "csv" {
		doc, err = inventory.ParseMachinesCSV(body)
	} else {
		doc, err = inventory.ParseDocument(body)
	}
	if err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	for _, m := range doc.Machines {
		if m.Profile == "" {
			continue
		}
		if _, ok := s.Renderer.Profiles().Get(m.Profile); !ok {
			writeErr(w, fmt.Errorf("machine %s: profile %s does not exist (provisiond profile list shows the profiles): %w", m.Name, m.Profile, errBadRequest))
			return
		}
	}
	apply := r.URL.Query().Get("apply") == "1"
	res, err := s.Hardware.Import(doc, apply)
	if err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	if apply {
		s.Log.Info("inventory imported", "changes", len(res.Changes), "unchanged", res.Unchanged)
		for _, c := range res.Changes {
			if c.Kind == "machine" && s.Events != nil {
				s.Events.Emit(events.Event{Type: events.MachineChanged, Machine: c.Name, Attrs: map[string]string{"source": "import", "action": c.Action, "fields": strconv.Itoa(len(c.Fields))}})
			}
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) exportDoc(w http.ResponseWriter, r *http.Request) {
	doc, err := s.Hardware.Export()
	if err != nil {
		writeErr(w, err)
		return
	}
	switch r.URL.Query().Get("format") {
	case "csv":
		var b bytes.Buffer
		if err := inventory.WriteMachinesCSV(&b, doc.Machines); err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Write(b.Bytes())
	case "", "yaml":
		out, err := doc.EncodeYAML()
		if err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(out)
	default:
		writeErr(w, fmt.Errorf("format %q is not yaml or csv: %w", r.URL.Query().Get("format"), errBadRequest))
	}
}

func (s *Server) listSystems(w http.ResponseWriter, r *http.Request) {
	v, err := s.Hardware.Systems()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) listParts(w http.ResponseWriter, r *http.Request) {
	v, err := s.Hardware.Parts()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) listRoles(w http.ResponseWriter, r *http.Request) {
	in, err := s.AuditInput()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, in.Roles)
}

// auditCache keeps the last audit while nothing it read has changed.
type auditCache struct {
	mu     sync.Mutex
	valid  bool
	rev    uint64
	roles  []inventory.Role
	models []audit.Model
	in     audit.Input
	rep    *audit.Report
}

// machinesCache keeps the decoded fleet while nothing in the store changed.
type machinesCache struct {
	mu       sync.Mutex
	valid    bool
	rev      uint64
	machines []inventory.Machine
}

// revision is the store's Revision; cacheable is false when it has none
// or it cannot tell.
func (s *Server) revision() (rev uint64, cacheable bool) {
	if s.Revision == nil {
		return 0, false
	}
	return s.Revision()
}

// Machines returns every machine, sorted by name, as Store.Machines does.
// On a store whose Revision says nothing changed since the last call, it
// answers from that call's list without decoding the fleet again: the
// dashboard's overview of a thousand machines reads them in microseconds.
// The list is shared: read it, never change it.
func (s *Server) Machines() ([]inventory.Machine, error) {
	rev, cacheable := s.revision()
	c := &s.machines
	c.mu.Lock()
	defer c.mu.Unlock()
	if cacheable && c.valid && c.rev == rev {
		return c.machines, nil
	}
	// Revision is read before the machines: a write in between leaves a
	// newer list under the older revision, read again at the next call.
	ms, err := s.Store.Machines()
	if err != nil {
		return nil, err
	}
	c.valid, c.rev, c.machines = cacheable, rev, ms
	return ms, nil
}

// Audit audits the whole inventory, as audit.Audit(AuditInput()) does. On
// a store whose Revision says nothing changed since the last audit, and
// with the same configured roles and models, it answers from that audit:
// a machine's page reads that machine's findings in a fleet of thousands
// without decoding the fleet. The report and input are shared: read them,
// never change them.
func (s *Server) Audit() (*audit.Report, audit.Input, error) {
	var roles []inventory.Role
	var models []audit.Model
	if s.AuditConfig != nil {
		roles, models = s.AuditConfig()
	}
	rev, cacheable := s.revision()
	c := &s.audits
	c.mu.Lock()
	defer c.mu.Unlock()
	if cacheable && c.valid && c.rev == rev && reflect.DeepEqual(c.roles, roles) && reflect.DeepEqual(c.models, models) {
		return c.rep, c.in, nil
	}
	in, err := s.auditInput(s.Machines)
	if err != nil {
		return nil, in, err
	}
	rep := audit.Audit(in)
	c.valid, c.rev, c.roles, c.models, c.in, c.rep = cacheable, rev, roles, models, in, rep
	return rep, in, nil
}

// AuditInput gathers the inventory for an audit: machines, systems, parts,
// the configured roles overridden by the inventory's, and model figures.
func (s *Server) AuditInput() (audit.Input, error) {
	return s.auditInput(s.Store.Machines)
}

// auditInput is AuditInput with the machines read by machines.
func (s *Server) auditInput(machines func() ([]inventory.Machine, error)) (audit.Input, error) {
	var in audit.Input
	var err error
	if in.Machines, err = machines(); err != nil {
		return in, err
	}
	if in.Systems, err = s.Hardware.Systems(); err != nil {
		return in, err
	}
	if in.Parts, err = s.Hardware.Parts(); err != nil {
		return in, err
	}
	stored, err := s.Hardware.Roles()
	if err != nil {
		return in, err
	}
	var roles []inventory.Role
	if s.AuditConfig != nil {
		roles, in.Models = s.AuditConfig()
	}
	in.Roles = audit.MergeRoles(roles, stored)
	return in, nil
}

// selectMachines keeps the machines the request's selector picks
// (?machine=&enclosure=&label=).
func selectMachines(ms []inventory.Machine, r *http.Request) ([]inventory.Machine, error) {
	q := r.URL.Query()
	return inventory.Selector{Machines: q["machine"], Enclosure: q.Get("enclosure"), Label: q.Get("label")}.Select(ms)
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	in, err := s.AuditInput()
	if err != nil {
		writeErr(w, err)
		return
	}
	if in.Machines, err = selectMachines(in.Machines, r); err != nil {
		writeErr(w, err)
		return
	}
	if role := r.URL.Query().Get("role"); role != "" {
		c, err := audit.Candidates(in, role)
		if err != nil {
			writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
			return
		}
		writeJSON(w, http.StatusOK, c)
		return
	}
	writeJSON(w, http.StatusOK, audit.Audit(in))
}

func (s *Server) power(w http.ResponseWriter, r *http.Request) {
	in, err := s.AuditInput()
	if err != nil {
		writeErr(w, err)
		return
	}
	sel, err := selectMachines(in.Machines, r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var names []string
	for _, m := range sel {
		if !m.Discovered {
			names = append(names, m.Name)
		}
	}
	rep, err := audit.Power(in, names)
	if err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	in, err := s.AuditInput()
	if err != nil {
		writeErr(w, err)
		return
	}
	var targets []audit.Target
	for _, t := range r.URL.Query()["role"] {
		name, count, ok := strings.Cut(t, "=")
		n, err := strconv.Atoi(count)
		if !ok || err != nil {
			writeErr(w, fmt.Errorf("role %q: write ROLE=COUNT, e.g. talos-worker=3: %w", t, errBadRequest))
			return
		}
		targets = append(targets, audit.Target{Role: name, Count: n})
	}
	if len(targets) == 0 {
		writeErr(w, fmt.Errorf("name at least one role and count (role=talos-worker=3): %w", errBadRequest))
		return
	}
	p, err := audit.MakePlan(in, targets)
	if err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	h, err := s.Hardware.History(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// AdoptRequest is the body of POST /api/v1/machines/{discovered}/adopt.
type AdoptRequest struct {
	// Into is the machine the discovered one becomes part of (a new
	// name makes it a machine of its own).
	Into string `json:"into"`
}

// AdoptResult is what an adoption did.
type AdoptResult struct {
	Machine *inventory.Machine      `json:"machine"`
	Filled  []inventory.FieldChange `json:"filled"`
	Drift   []string                `json:"drift"`
}

// adopt merges a discovered machine into a machine of the inventory.
func (s *Server) adopt(w http.ResponseWriter, r *http.Request) {
	var req AdoptRequest
	if err := decodeBody(r, "adopt request", 4096, &req); err != nil {
		writeErr(w, err)
		return
	}
	if req.Into == "" {
		writeErr(w, fmt.Errorf("name the machine to adopt into: %w", errBadRequest))
		return
	}
	name := r.PathValue("name")
	m, filled, err := s.Hardware.Adopt(name, req.Into)
	if err != nil {
		if !errors.Is(err, inventory.ErrConflict) && !errors.Is(err, inventory.ErrNotFound) {
			err = fmt.Errorf("%w: %w", err, errBadRequest)
		}
		writeErr(w, err)
		return
	}
	s.Log.Info("discovered machine adopted", "discovered", name, "machine", m.Name, "filled", len(filled))
	if s.Events != nil {
		s.Events.Emit(events.Event{Type: events.MachineChanged, Machine: m.Name, Attrs: map[string]string{"source": "adopt", "action": "adopted " + name, "fields": strconv.Itoa(len(filled))}})
	}
	if filled == nil {
		filled = []inventory.FieldChange{}
	}
	drift := audit.Drift(m)
	if drift == nil {
		drift = []string{}
	}
	writeJSON(w, http.StatusOK, AdoptResult{Machine: m, Filled: filled, Drift: drift})
}

// Adopt merges discovered machine discovered into machine into.
func (c *Client) Adopt(ctx context.Context, discovered, into string) (*AdoptResult, error) {
	var out AdoptResult
	return &out, c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(discovered)+"/adopt", AdoptRequest{Into: into}, &out)
}

func (s *Server) accept(w http.ResponseWriter, r *http.Request) {
	m, changes, err := s.Hardware.AcceptObserved(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	s.Log.Info("observed hardware accepted", "machine", m.Name, "fields", len(changes))
	if changes == nil {
		changes = []inventory.FieldChange{}
	}
	writeJSON(w, http.StatusOK, changes)
}

func (s *Server) facts(w http.ResponseWriter, r *http.Request) {
	var rep FactsReport
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		writeErr(w, fmt.Errorf("facts report: %v: %w", err, errBadRequest))
		return
	}
	if !s.authorized(r) {
		// Facts change what audit and plan believe: the API token, or
		// the proof of a boot provisiond saw (a nonce, from the machine's
		// own address, once).
		mac, err := inventory.NormalizeMAC(rep.BootMAC)
		if err != nil || rep.BootNonce == "" || s.BootProof == nil {
			writeJSON(w, http.StatusUnauthorized, Error{Error: "facts reports " + needToken + ", or boot_mac and boot_nonce from the machine's provisiond boot (provisiond.callback= on its kernel command line)"})
			return
		}
		name, err := s.BootProof(mac, rep.BootNonce, netutil.SourceAddr(r))
		if err != nil || (rep.Machine != "" && rep.Machine != name) {
			writeJSON(w, http.StatusUnauthorized, Error{Error: "facts report refused: the boot proof does not hold (wrong or used nonce, another machine, or not from its own address)"})
			return
		}
		rep.Machine = name
	}
	obs := inventory.Observed{Hardware: rep.Hardware, Source: inventory.ObservedAgent, Time: time.Now(), Host: rep.Host}
	m, filled, err := s.Hardware.Observe(rep.Machine, obs)
	if err != nil {
		if !errors.Is(err, inventory.ErrNotFound) {
			err = fmt.Errorf("%v: %w", err, errBadRequest)
		}
		writeErr(w, err)
		return
	}
	if filled == nil {
		filled = []inventory.FieldChange{}
	}
	drift := audit.Drift(m)
	if drift == nil {
		drift = []string{}
	}
	s.Log.Info("hardware reported", "machine", m.Name, "host", rep.Host, "filled", len(filled), "drift", len(drift))
	if s.Events != nil {
		s.Events.Emit(events.Event{Type: events.FactsReported, Machine: m.Name, Attrs: map[string]string{"host": rep.Host, "filled": strconv.Itoa(len(filled)), "drift": strconv.Itoa(len(drift))}})
	}
	writeJSON(w, http.StatusOK, FactsResult{Machine: m.Name, Discovered: m.Discovered, Filled: filled, Drift: drift})
}
