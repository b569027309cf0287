package api

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/inventory"
)

// AssignRequest is the body of POST /api/v1/machines/{name}/assign.
type AssignRequest struct {
	// Profile is the profile the machine boots.
	Profile string `json:"profile"`
	// Once makes it a one-shot assignment: after one boot of Profile the
	// machine reverts to Then (default local).
	Once bool   `json:"once,omitempty"`
	Then string `json:"then,omitempty"`
	// Params are parameters for the one-shot boot only (with Once).
	Params map[string]string `json:"params,omitempty"`
}

// ReprovisionRequest is the body of POST /api/v1/machines/{name}/reprovision:
// an assignment, then PXE next and a power cycle (or on) through the BMC.
type ReprovisionRequest struct {
	AssignRequest
	// EFI asks for a UEFI PXE boot (true) or a legacy one (false); unset,
	// it follows the firmware the machine or its model is bound to.
	EFI *bool `json:"efi,omitempty"`
}

// ReprovisionResult is what a reprovision did.
type ReprovisionResult struct {
	Machine    *inventory.Machine `json:"machine"`
	BootDevice *BootDeviceResult  `json:"bootdev"`
	Power      *PowerResult       `json:"power"`
	// Steps says it for people: "profile talos once (then local), PXE
	// next, power-cycled".
	Steps string `json:"steps"`
	// Warning is a check that could not be made (Talos names offline).
	Warning string `json:"warning,omitempty"`
}

// assignMachine gives machine name the profile of req in one transaction,
// keeping the rest of its record as stored (nothing a boot or another
// client writes meanwhile is lost), after the profile's checks.
func (s *Server) assignMachine(ctx context.Context, name string, req AssignRequest) (*inventory.Machine, string, error) {
	if req.Profile == "" {
		return nil, "", fmt.Errorf("name the profile to assign (provisiond profile list shows the profiles): %w", errBadRequest)
	}
	if req.Then != "" && !req.Once {
		return nil, "", fmt.Errorf("then (%s) goes with a one-shot assignment (once): %w", req.Then, errBadRequest)
	}
	if len(req.Params) > 0 && !req.Once {
		return nil, "", fmt.Errorf("params go with a one-shot assignment (once); a machine's own are set with provisiond machine set --param: %w", errBadRequest)
	}
	if _, ok := s.Renderer.Profiles().Get(req.Profile); !ok {
		return nil, "", fmt.Errorf("profile %s does not exist (provisiond profile list shows the profiles): %w", req.Profile, errBadRequest)
	}
	var once *inventory.Once
	if req.Once {
		then := cmp.Or(req.Then, "local")
		if _, ok := s.Renderer.Profiles().Get(then); !ok {
			return nil, "", fmt.Errorf("profile %s (then) does not exist (provisiond profile list shows the profiles): %w", then, errBadRequest)
		}
		once = &inventory.Once{Then: then, Since: time.Now().UTC(), Params: req.Params}
	}
	cur, err := s.Store.Machine(name)
	if err != nil {
		return nil, "", err
	}
	cand := *cur
	cand.Profile = req.Profile
	warning, err := s.checkAssignment(ctx, cand)
	if err != nil {
		return nil, "", err
	}
	var before inventory.Machine
	saved, err := s.Store.UpdateMachine(name, func(m *inventory.Machine) error {
		before = *m
		m.Profile, m.Once, m.Discovered = req.Profile, once, false
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	s.saved(&before, saved)
	return saved, warning, nil
}

// assign gives a machine a profile, persistent or once.
func (s *Server) assign(w http.ResponseWriter, r *http.Request) {
	var req AssignRequest
	if err := decodeBody(r, "assignment", 64<<10, &req); err != nil {
		writeErr(w, err)
		return
	}
	saved, warning, err := s.assignMachine(r.Context(), r.PathValue("name"), req)
	if err != nil {
		writeErr(w, err)
		return
	}
	warn(w, warning)
	writeJSON(w, http.StatusOK, saved)
}

// reprovision switches a machine to a profile in one call, as the CLI's
// assign --reboot and the dashboard do: assign, PXE next through the BMC
// (UEFI when the machine's firmware says so), power-cycle (a machine that
// is off is powered on). Following the boot is the caller's: the
// timeline streams it.
func (s *Server) reprovision(w http.ResponseWriter, r *http.Request) {
	if s.noBMC(w) {
		return
	}
	var req ReprovisionRequest
	if err := decodeBody(r, "reprovision request", 64<<10, &req); err != nil {
		writeErr(w, err)
		return
	}
	ctx, name := r.Context(), r.PathValue("name")
	m, warning, err := s.assignMachine(ctx, name, req.AssignRequest)
	if err != nil {
		writeErr(w, err)
		return
	}
	res := &ReprovisionResult{Machine: m, Warning: warning, Steps: "profile " + req.Profile}
	if m.Once != nil {
		res.Steps += " once (then " + m.Once.Then + ")"
	}
	efi := false
	if req.EFI != nil {
		efi = *req.EFI
	} else if s.AuditConfig != nil {
		_, models := s.AuditConfig()
		fw, _ := audit.Firmware(m, models)
		efi = fw == inventory.FirmwareUEFI
	}
	if res.BootDevice, err = s.BMC.BootDevice(ctx, m.Name, BootDeviceRequest{Device: "pxe", EFI: efi}); err != nil {
		writeBMCErr(w, fmt.Errorf("%s assigned; setting PXE next failed: %w", res.Steps, err))
		return
	}
	if res.Power, err = s.BMC.Power(ctx, m.Name, "cycle"); err != nil {
		writeBMCErr(w, fmt.Errorf("%s assigned, PXE next; the power cycle failed: %w", res.Steps, err))
		return
	}
	if res.Power.Note != "" {
		res.Steps += ", PXE next, powered on"
	} else {
		res.Steps += ", PXE next, power-cycled"
	}
	if res.BootDevice.Note != "" {
		res.Steps += " (" + res.BootDevice.Note + ")"
	}
	warn(w, warning)
	writeJSON(w, http.StatusOK, res)
}

// Reprovision switches a machine to a profile and reboots it into PXE
// through its BMC (POST /api/v1/machines/{name}/reprovision).
func (c *Client) Reprovision(ctx context.Context, machine string, req ReprovisionRequest) (*ReprovisionResult, error) {
	var out ReprovisionResult
	if err := c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(machine)+"/reprovision", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
