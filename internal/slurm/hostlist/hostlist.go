// Package hostlist reads Slurm's hostlist expressions (node-[003-005,010],
// rack[1-2]-n[01-02]) as Slurm does: what slurmctld hands a power-saving
// program, and what scontrol show hostnames prints.
package hostlist

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxHosts bounds one expression's expansion (Slurm refuses a range of
// more than 65,536 hosts too).
const MaxHosts = 65536

// Expand returns the host names expr names, in its order, duplicates kept
// (as scontrol show hostnames prints them). Names are separated by commas
// or blanks outside brackets; a bracket holds numbers and ranges (lo-hi),
// comma-separated, each printed as wide as its lo is written; several
// brackets in one name combine, the first varying slowest.
func Expand(expr string) ([]string, error) {
	var out []string
	for _, name := range split(expr) {
		if name == "" {
			continue
		}
		hosts, err := expandName(name, MaxHosts-len(out))
		if err != nil {
			return nil, fmt.Errorf("hostlist %q: %w", expr, err)
		}
		out = append(out, hosts...)
	}
	return out, nil
}

// split cuts expr at commas and blanks outside brackets.
func split(expr string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range expr {
		switch {
		case r == '[':
			depth++
		case r == ']':
			depth--
		case depth == 0 && (r == ',' || r == ' ' || r == '\t' || r == '\n'):
			out = append(out, expr[start:i])
			start = i + 1
		}
	}
	return append(out, expr[start:])
}

// expandName expands one name with its brackets, at most limit hosts.
func expandName(name string, limit int) ([]string, error) {
	hosts := []string{""}
	for name != "" {
		open := strings.IndexByte(name, '[')
		if open < 0 {
			if strings.ContainsRune(name, ']') {
				return nil, errors.New("a ']' without its '['")
			}
			for i := range hosts {
				hosts[i] += name
			}
			break
		}
		closing := strings.IndexByte(name[open:], ']')
		if closing < 0 {
			return nil, errors.New("a '[' without its ']'")
		}
		lit, body := name[:open], name[open+1:open+closing]
		if strings.ContainsAny(lit, "]") || strings.ContainsRune(body, '[') {
			return nil, errors.New("brackets inside brackets")
		}
		nums, err := ranges(body)
		if err != nil {
			return nil, err
		}
		if len(hosts)*len(nums) > limit {
			return nil, fmt.Errorf("more than %d hosts", MaxHosts)
		}
		next := make([]string, 0, len(hosts)*len(nums))
		for _, h := range hosts {
			for _, n := range nums {
				next = append(next, h+lit+n)
			}
		}
		hosts, name = next, name[open+closing+1:]
	}
	return hosts, nil
}

// ranges expands a bracket's body: 003-005,010 -> 003 004 005 010.
func ranges(body string) ([]string, error) {
	var out []string
	for _, r := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, errA := number(lo)
		b, errB := number(hi)
		if errA != nil || errB != nil || b < a {
			return nil, fmt.Errorf("%q is not a number or a range lo-hi", r)
		}
		if b-a+1 > MaxHosts || len(out)+(b-a+1) > MaxHosts {
			return nil, fmt.Errorf("more than %d hosts in %q", MaxHosts, r)
		}
		for n := a; n <= b; n++ {
			out = append(out, fmt.Sprintf("%0*d", len(lo), n))
		}
	}
	return out, nil
}

// number reads digits only (no sign, no blanks).
func number(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || len(s) > 9 {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	return strconv.Atoi(s)
}

// Compress writes hosts as one expression, runs of numbered names with
// one prefix and width folded into brackets (node-[003-005,010]); names
// keep their order of first appearance by prefix.
func Compress(hosts []string) string {
	type group struct {
		prefix string
		width  int
		nums   []int
	}
	var order []*group
	byKey := map[string]*group{}
	var plain []string
	for _, h := range hosts {
		i := len(h)
		for i > 0 && h[i-1] >= '0' && h[i-1] <= '9' {
			i--
		}
		if i == len(h) || len(h)-i > 9 {
			plain = append(plain, h)
			continue
		}
		n, _ := strconv.Atoi(h[i:])
		width := 0 // as wide as it is: 9, 10
		if h[i] == '0' && len(h)-i > 1 {
			width = len(h) - i // zero-padded: 009, 010
		}
		key := h[:i] + "\x00" + strconv.Itoa(width)
		g := byKey[key]
		if g == nil {
			g = &group{prefix: h[:i], width: width}
			byKey[key] = g
			order = append(order, g)
		}
		g.nums = append(g.nums, n)
	}
	var parts []string
	for _, g := range order {
		if len(g.nums) == 1 {
			parts = append(parts, fmt.Sprintf("%s%0*d", g.prefix, g.width, g.nums[0]))
			continue
		}
		var rs []string
		for i := 0; i < len(g.nums); {
			j := i
			for j+1 < len(g.nums) && g.nums[j+1] == g.nums[j]+1 {
				j++
			}
			if j == i {
				rs = append(rs, fmt.Sprintf("%0*d", g.width, g.nums[i]))
			} else {
				rs = append(rs, fmt.Sprintf("%0*d-%0*d", g.width, g.nums[i], g.width, g.nums[j]))
			}
			i = j + 1
		}
		parts = append(parts, g.prefix+"["+strings.Join(rs, ",")+"]")
	}
	return strings.Join(append(parts, plain...), ",")
}
