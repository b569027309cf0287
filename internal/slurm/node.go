// Package slurm connects provisiond with Slurm: which machines are Slurm
// nodes and under what names, and Slurm's power saving (slurmctld's
// ResumeProgram, SuspendProgram and ResumeFailProgram) carried out through
// the machines' BMCs or enclosures.
package slurm

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/slurm/hostlist"
)

// Profile is the profile a Slurm node boots.
const Profile = "slurm"

// NodeName is machine m's Slurm NodeName, as the slurm profile names the
// node: its node_name parameter, else its hostname, else its name.
func NodeName(m *inventory.Machine) string {
	switch {
	case m.Params["node_name"] != "":
		return m.Params["node_name"]
	case m.Hostname != "":
		return m.Hostname
	}
	return m.Name
}

// IsNode reports whether m is a Slurm machine: it boots the slurm profile,
// now or once its one-shot assignment is used up.
func IsNode(m *inventory.Machine) bool {
	if m.Discovered {
		return false
	}
	return m.Profile == Profile || (m.Once != nil && m.Once.Then == Profile)
}

// Target is one node of a hostlist and the machine behind it.
type Target struct {
	Node    string `json:"node"`
	Machine string `json:"machine"`
}

// Refusal is a node of a hostlist provisiond will not act on, and why.
type Refusal struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// ErrBadHostlist marks a hostlist expression that cannot be read.
var ErrBadHostlist = errors.New("bad hostlist")

// Resolve maps the nodes of hostlist expression expr to the Slurm machines
// in ms. Nodes that are no Slurm machine are refused by name; a node named
// twice is acted on once.
func Resolve(expr string, ms []inventory.Machine) ([]Target, []Refusal, error) {
	nodes, err := hostlist.Expand(expr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadHostlist, err)
	}
	if len(nodes) == 0 {
		return nil, nil, fmt.Errorf("%w: %q names no node", ErrBadHostlist, expr)
	}
	byNode := map[string]*inventory.Machine{}
	other := map[string]*inventory.Machine{}
	for i := range ms {
		m := &ms[i]
		if IsNode(m) {
			byNode[NodeName(m)] = m
		} else {
			other[NodeName(m)] = m
			other[m.Name] = m
		}
	}
	var ts []Target
	var refused []Refusal
	seen := map[string]bool{}
	for _, n := range nodes {
		if seen[n] {
			continue
		}
		seen[n] = true
		if m, ok := byNode[n]; ok {
			ts = append(ts, Target{Node: n, Machine: m.Name})
			continue
		}
		reason := "no machine in the inventory is this Slurm node"
		if m, ok := other[n]; ok {
			reason = fmt.Sprintf("machine %s boots profile %q, not slurm", m.Name, m.Profile)
		}
		refused = append(refused, Refusal{Node: n, Reason: reason})
	}
	slices.SortFunc(refused, func(a, b Refusal) int { return strings.Compare(a.Node, b.Node) })
	return ts, refused, nil
}
