package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/inventory"
)

// ErrBadRequest marks errors caused by the request (or the machine record
// it names) rather than by provisiond or a BMC.
var ErrBadRequest = errBadRequest

// BMC runs management-controller actions for machines in the inventory.
type BMC interface {
	// Power reports (action "status") or changes a machine's power.
	Power(ctx context.Context, machine, action string) (*PowerResult, error)
	// BootDevice sets a machine's next boot device.
	BootDevice(ctx context.Context, machine string, req BootDeviceRequest) (*BootDeviceResult, error)
	// Inventory reads the hardware a Redfish BMC reports into the
	// machine's observed hardware.
	Inventory(ctx context.Context, machine string) (*InventoryResult, error)
	// Locate makes a blade's locator LED blink (on) or go off, through
	// its enclosure's OA.
	Locate(ctx context.Context, machine string, on bool) (*LocateResult, error)
}

// LocateRequest is the body of POST /api/v1/machines/{name}/locate.
type LocateRequest struct {
	// On makes the LED blink; false turns it off.
	On bool `json:"on"`
}

// LocateResult is what a locate did.
type LocateResult struct {
	Machine string `json:"machine"`
	// State is blink or off.
	State   string  `json:"state"`
	Via     string  `json:"via"`
	Seconds float64 `json:"seconds"`
}

// PowerRequest is the body of POST /api/v1/machines/{name}/power.
type PowerRequest struct {
	// Action is on, off, soft, cycle or reset.
	Action string `json:"action"`
}

// PowerResult is what a power call did.
type PowerResult struct {
	Machine string `json:"machine" yaml:"machine"`
	Action  string `json:"action" yaml:"action"`
	// Before is the power state found before acting (empty for status).
	Before string `json:"before,omitempty" yaml:"before,omitempty"`
	// State is the power state after the call.
	State string `json:"state" yaml:"state"`
	// Note says what was done when it differs from the action (a cycle of
	// a machine that was off powers it on).
	Note    string  `json:"note,omitempty" yaml:"note,omitempty"`
	Seconds float64 `json:"seconds" yaml:"seconds"`
}

// BootDeviceRequest is the body of POST /api/v1/machines/{name}/bootdev.
type BootDeviceRequest struct {
	Device     string `json:"device"`
	Persistent bool   `json:"persistent,omitempty"`
	EFI        bool   `json:"efi,omitempty"`
}

// BootDeviceResult is what a boot-device call did.
type BootDeviceResult struct {
	Machine    string `json:"machine" yaml:"machine"`
	Device     string `json:"device" yaml:"device"`
	Persistent bool   `json:"persistent" yaml:"persistent"`
	EFI        bool   `json:"efi" yaml:"efi"`
	// ReadBack is the boot flags as the BMC reports them after the call
	// (IPMI: "valid pxe once bios, 60 s timeout off"; "" where the
	// protocol cannot read them back).
	ReadBack string `json:"readback,omitempty" yaml:"readback,omitempty"`
	// Note warns of what may still go wrong (the BMC kept its 60 s timeout).
	Note    string  `json:"note,omitempty" yaml:"note,omitempty"`
	Seconds float64 `json:"seconds" yaml:"seconds"`
}

// InventoryResult is what a BMC inventory collection found and filled.
type InventoryResult struct {
	Machine string                  `json:"machine" yaml:"machine"`
	Source  string                  `json:"source" yaml:"source"`
	Found   inventory.Hardware      `json:"found" yaml:"found"`
	Filled  []inventory.FieldChange `json:"filled" yaml:"filled"`
	Seconds float64                 `json:"seconds" yaml:"seconds"`
}

func (s *Server) registerBMC(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/machines/{name}/power", s.powerStatus)
	mux.HandleFunc("POST /api/v1/machines/{name}/power", s.auth(s.powerAction))
	mux.HandleFunc("POST /api/v1/machines/{name}/bootdev", s.auth(s.bootDevice))
	mux.HandleFunc("POST /api/v1/machines/{name}/bmc/inventory", s.auth(s.bmcInventory))
	mux.HandleFunc("POST /api/v1/machines/{name}/locate", s.auth(s.locate))
}

// writeBMCErr answers 502 for a BMC that failed or did not answer, and as
// writeErr does otherwise.
func writeBMCErr(w http.ResponseWriter, err error) {
	var be *bmc.Error
	if errors.As(err, &be) {
		status := http.StatusBadGateway
		if be.Timeout > 0 {
			status = http.StatusGatewayTimeout
		}
		writeJSON(w, status, Error{Error: err.Error()})
		return
	}
	writeErr(w, err)
}

func (s *Server) noBMC(w http.ResponseWriter) bool {
	if s.BMC == nil {
		writeJSON(w, http.StatusNotImplemented, Error{Error: "this daemon has no BMC support configured"})
		return true
	}
	return false
}

func (s *Server) powerStatus(w http.ResponseWriter, r *http.Request) {
	if s.noBMC(w) {
		return
	}
	res, err := s.BMC.Power(r.Context(), r.PathValue("name"), "status")
	if err != nil {
		writeBMCErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) powerAction(w http.ResponseWriter, r *http.Request) {
	if s.noBMC(w) {
		return
	}
	var req PowerRequest
	if err := decodeBody(r, "request", 64<<10, &req); err != nil {
		writeErr(w, err)
		return
	}
	if _, err := bmc.ParsePowerAction(req.Action); err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	res, err := s.BMC.Power(r.Context(), r.PathValue("name"), req.Action)
	if err != nil {
		writeBMCErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) bootDevice(w http.ResponseWriter, r *http.Request) {
	if s.noBMC(w) {
		return
	}
	var req BootDeviceRequest
	if err := decodeBody(r, "request", 64<<10, &req); err != nil {
		writeErr(w, err)
		return
	}
	if _, err := bmc.ParseBootDevice(req.Device); err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	res, err := s.BMC.BootDevice(r.Context(), r.PathValue("name"), req)
	if err != nil {
		writeBMCErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) bmcInventory(w http.ResponseWriter, r *http.Request) {
	if s.noBMC(w) {
		return
	}
	res, err := s.BMC.Inventory(r.Context(), r.PathValue("name"))
	if err != nil {
		writeBMCErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decodeBody decodes a JSON request body of at most limit bytes into v,
// refusing unknown fields; what names the body in the error.
func decodeBody(r *http.Request, what string, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s JSON: %v: %w", what, err, errBadRequest)
	}
	return nil
}

// PowerStatus asks a machine's BMC for its power state.
func (c *Client) PowerStatus(ctx context.Context, machine string) (*PowerResult, error) {
	var out PowerResult
	return &out, c.do(ctx, http.MethodGet, "/api/v1/machines/"+url.PathEscape(machine)+"/power", nil, &out)
}

// Power changes a machine's power through its BMC.
func (c *Client) Power(ctx context.Context, machine, action string) (*PowerResult, error) {
	var out PowerResult
	return &out, c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(machine)+"/power", PowerRequest{Action: action}, &out)
}

// BootDevice sets a machine's next boot device through its BMC.
func (c *Client) BootDevice(ctx context.Context, machine string, req BootDeviceRequest) (*BootDeviceResult, error) {
	var out BootDeviceResult
	return &out, c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(machine)+"/bootdev", req, &out)
}

// BMCInventory collects the hardware a machine's Redfish BMC reports.
func (c *Client) BMCInventory(ctx context.Context, machine string) (*InventoryResult, error) {
	var out InventoryResult
	return &out, c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(machine)+"/bmc/inventory", nil, &out)
}

// Select returns the machines named, in the enclosure or with the label
// (all machines when the selector is empty).
func (c *Client) Select(ctx context.Context, sel Selector) ([]inventory.Machine, error) {
	var out []inventory.Machine
	return out, c.do(ctx, http.MethodGet, "/api/v1/machines?"+selectorQuery(sel, url.Values{}).Encode(), nil, &out)
}

func (s *Server) locate(w http.ResponseWriter, r *http.Request) {
	if s.noBMC(w) {
		return
	}
	var req LocateRequest
	if err := decodeBody(r, "request", 64<<10, &req); err != nil {
		writeErr(w, err)
		return
	}
	res, err := s.BMC.Locate(r.Context(), r.PathValue("name"), req.On)
	if err != nil {
		writeBMCErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Locate asks the daemon to blink (on) or stop a blade's locator LED.
func (c *Client) Locate(ctx context.Context, machine string, on bool) (*LocateResult, error) {
	var out LocateResult
	return &out, c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(machine)+"/locate", LocateRequest{On: on}, &out)
}
