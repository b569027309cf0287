package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/inventory"
)

// Selector picks machines for audit and power: names (or tags), an
// enclosure, a label (key=value; role=X also matches the role field).
type Selector = inventory.Selector

func selectorQuery(s Selector, q url.Values) url.Values {
	for _, m := range s.Machines {
		q.Add("machine", m)
	}
	if s.Enclosure != "" {
		q.Set("enclosure", s.Enclosure)
	}
	if s.Label != "" {
		q.Set("label", s.Label)
	}
	return q
}

// Import sends an inventory file (YAML, or CSV when csv is set); with
// apply false it only reports what would change.
func (c *Client) Import(ctx context.Context, data []byte, csv, apply bool) (*inventory.ImportResult, error) {
	q := url.Values{}
	if apply {
		q.Set("apply", "1")
	}
	if csv {
		q.Set("format", "csv")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.Server, "/")+"/api/v1/import?"+q.Encode(), bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("bad server URL %q: %w", c.Server, err)
	}
	req.Header.Set("Content-Type", "application/yaml")
	var out inventory.ImportResult
	return &out, c.send(req, &out)
}

// Export returns the inventory as YAML or CSV (format "yaml" or "csv").
func (c *Client) Export(ctx context.Context, format string) ([]byte, error) {
	var out []byte
	err := c.do(ctx, http.MethodGet, "/api/v1/export?format="+url.QueryEscape(format), nil, &out)
	return out, err
}

// Systems lists the systems (enclosures, shelves, ...).
func (c *Client) Systems(ctx context.Context) ([]inventory.System, error) {
	var out []inventory.System
	return out, c.do(ctx, http.MethodGet, "/api/v1/systems", nil, &out)
}

// Parts lists the spare-parts pool.
func (c *Client) Parts(ctx context.Context) ([]inventory.Part, error) {
	var out []inventory.Part
	return out, c.do(ctx, http.MethodGet, "/api/v1/parts", nil, &out)
}

// Roles lists the effective role requirements.
func (c *Client) Roles(ctx context.Context) ([]inventory.Role, error) {
	var out []inventory.Role
	return out, c.do(ctx, http.MethodGet, "/api/v1/roles", nil, &out)
}

// Audit audits the selected machines.
func (c *Client) Audit(ctx context.Context, sel Selector) (*audit.Report, error) {
	var out audit.Report
	return &out, c.do(ctx, http.MethodGet, "/api/v1/audit?"+selectorQuery(sel, url.Values{}).Encode(), nil, &out)
}

// Candidates ranks the selected machines for role.
func (c *Client) Candidates(ctx context.Context, sel Selector, role string) ([]audit.Candidate, error) {
	var out []audit.Candidate
	q := selectorQuery(sel, url.Values{"role": {role}})
	return out, c.do(ctx, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, &out)
}

// PowerBudget estimates the power of the selected machines running.
func (c *Client) PowerBudget(ctx context.Context, sel Selector) (*audit.PowerReport, error) {
	var out audit.PowerReport
	return &out, c.do(ctx, http.MethodGet, "/api/v1/audit/power?"+selectorQuery(sel, url.Values{}).Encode(), nil, &out)
}

// Plan proposes how to reach the targets ("talos-worker=3") with spare parts.
func (c *Client) Plan(ctx context.Context, targets []string) (*audit.Plan, error) {
	var out audit.Plan
	return &out, c.do(ctx, http.MethodGet, "/api/v1/plan?"+url.Values{"role": targets}.Encode(), nil, &out)
}

// History returns a machine's hardware change history.
func (c *Client) History(ctx context.Context, name string) ([]inventory.Change, error) {
	var out []inventory.Change
	return out, c.do(ctx, http.MethodGet, "/api/v1/machines/"+url.PathEscape(name)+"/history", nil, &out)
}

// Accept makes a machine's observed hardware its record.
func (c *Client) Accept(ctx context.Context, name string) ([]inventory.FieldChange, error) {
	var out []inventory.FieldChange
	return out, c.do(ctx, http.MethodPost, "/api/v1/machines/"+url.PathEscape(name)+"/accept", nil, &out)
}

// ReportFacts posts an agent's hardware report.
func (c *Client) ReportFacts(ctx context.Context, rep FactsReport) (*FactsResult, error) {
	var out FactsResult
	return &out, c.do(ctx, http.MethodPost, "/api/v1/facts", rep, &out)
}
