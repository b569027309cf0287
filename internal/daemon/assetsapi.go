package daemon

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/commission"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/talos"
)

// assetsAPI serves the API's asset calls from the cache and the providers.
type assetsAPI struct {
	cache      *assets.Cache
	talos      *talos.Provider
	commission *commission.Provider
	store      inventory.Machines
	boot       func() map[string]string // config default params
}

func (a *assetsAPI) Entries() ([]assets.Manifest, error) { return a.cache.Entries("") }

func (a *assetsAPI) Pull(_ context.Context, req api.PullRequest) (*assets.Job, map[string]string, error) {
	switch req.Kind {
	case "commission":
		return a.commission.Pull()
	case "talos":
	default:
		return nil, nil, fmt.Errorf("unknown asset kind %q: provisiond pulls talos or commission", req.Kind)
	}
	var m *inventory.Machine
	if req.Machine != "" {
		var err error
		if m, err = a.store.Machine(req.Machine); err != nil {
			return nil, nil, err
		}
	}
	params := machineParams(a.boot(), m)
	r, why := a.talos.RequestFor(m, params)
	if req.Version != "" {
		r.Version = req.Version
	}
	if req.Extensions != nil {
		r.Extensions = req.Extensions
	}
	if req.ExtraKernelArgs != nil {
		r.ExtraKernelArgs = req.ExtraKernelArgs
	}
	_, id, entry, err := a.talos.Plan(r)
	if err != nil {
		return nil, nil, err
	}
	info := map[string]string{"entry": entry, "schematic": id, "version": r.Version, "factory": a.talos.FactoryURL(), "path": path.Join("/assets", entry),
		"extensions": strings.Join(r.Extensions, " "), "why": why}
	if req.Extensions != nil {
		info["why"] = "extensions as asked"
	}
	if _, ok := a.cache.Complete(entry); ok {
		return nil, info, nil
	}
	job, _, err := a.talos.Pull(r)
	return job, info, err
}
