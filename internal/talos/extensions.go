package talos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// ErrCannotCheck says the factory could not tell its official extensions
// (unreachable, or a mirror without the endpoint): the names were not
// checked.
var ErrCannotCheck = errors.New("the official extensions could not be listed")

// OfficialExtensions lists the official system extensions the factory
// offers for a Talos version (GET /version/V/extensions/official).
func (f *Factory) OfficialExtensions(ctx context.Context, version string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url("/version/"+url.PathEscape(version)+"/extensions/official"), nil)
	if err != nil {
		return nil, fmt.Errorf("the Image Factory URL %q: %w", f.BaseURL, err)
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: the Image Factory at %s cannot be reached: %v", ErrCannotCheck, f.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: the Image Factory at %s answered %s for Talos %s", ErrCannotCheck, f.BaseURL, resp.Status, version)
	}
	var list []struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("%w: the Image Factory at %s answered something that is not a list of extensions: %v", ErrCannotCheck, f.BaseURL, err)
	}
	var out []string
	for _, e := range list {
		out = append(out, e.Name)
	}
	return out, nil
}

// CheckExtensions says which of names are not official extensions of the
// Talos version (official, as OfficialExtensions lists them), with the
// nearest official names for each: a schematic with an unknown name is
// accepted by the factory and boots a Talos without what it was meant to
// carry (firmware for a NIC, for one).
func CheckExtensions(names, official []string, version string) error {
	var bad []string
	for _, n := range names {
		if n == "" || slices.Contains(official, n) {
			continue
		}
		msg := fmt.Sprintf("Talos %s has no official extension %s", version, n)
		if near := nearest(n, official); len(near) > 0 {
			msg += " (did you mean " + strings.Join(near, " or ") + "?)"
		}
		bad = append(bad, msg)
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; ") + ": fix talos.extensions, talos.nic_extensions or the machine's talos_extensions")
	}
	return nil
}

// nearest returns up to three official names that contain name's last part
// or are within a few edits of it.
func nearest(name string, official []string) []string {
	base := name[strings.LastIndex(name, "/")+1:]
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	for _, o := range official {
		ob := o[strings.LastIndex(o, "/")+1:]
		d := editDistance(base, ob)
		if strings.Contains(ob, base) || strings.Contains(base, ob) {
			d = 0
		}
		if d <= 3 {
			cs = append(cs, cand{o, d})
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return a.d - b.d })
	var out []string
	for i := 0; i < len(cs) && i < 3; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
