package inventory

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// csvColumn is one column of the machines CSV: plain values for scalars,
// "a;b" for MACs, "k=v;k=v" for labels and parameters, and JSON for the
// lists of parts (cpus, dimms, disks, nics, components, bmc, once), so the
// round trip loses nothing.
type csvColumn struct {
	name string
	get  func(m *Machine) (string, error)
	set  func(m *Machine, v string) error
}

func strCol(name string, f func(m *Machine) *string) csvColumn {
	return csvColumn{name,
		func(m *Machine) (string, error) { return *f(m), nil },
		func(m *Machine, v string) error { *f(m) = v; return nil }}
}

func intCol(name string, f func(m *Machine) *int) csvColumn {
	return csvColumn{name,
		func(m *Machine) (string, error) {
			if *f(m) == 0 {
				return "", nil
			}
			return strconv.Itoa(*f(m)), nil
		},
		func(m *Machine, v string) error {
			if v == "" {
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s %q is not a whole number", name, v)
			}
			*f(m) = n
			return nil
		}}
}

func jsonCol[T any](name string, f func(m *Machine) *T) csvColumn {
	return csvColumn{name,
		func(m *Machine) (string, error) {
			if jsonEmpty(f(m)) {
				return "", nil
			}
			raw, err := json.Marshal(f(m))
			return string(raw), err
		},
		func(m *Machine, v string) error {
			if v == "" {
				return nil
			}
			dec := json.NewDecoder(strings.NewReader(v))
			dec.DisallowUnknownFields()
			if err := dec.Decode(f(m)); err != nil {
				return fmt.Errorf("%s is not valid JSON for this column: %v", name, err)
			}
			return nil
		}}
}

// jsonEmpty reports whether v encodes as null, [] or {}.
func jsonEmpty(v any) bool {
	raw, _ := json.Marshal(v)
	s := string(raw)
	return s == "null" || s == "[]" || s == "{}"
}

func kvCol(name string, f func(m *Machine) *map[string]string) csvColumn {
	return csvColumn{name,
		func(m *Machine) (string, error) {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(*f(m))) {
				v := (*f(m))[k]
				if strings.Contains(v, ";") {
					return "", fmt.Errorf("machine %s: %s value %q contains ';', which CSV export cannot write: use YAML", m.Name, name, v)
				}
				parts = append(parts, k+"="+v)
			}
			return strings.Join(parts, ";"), nil
		},
		func(m *Machine, v string) error {
			if v == "" {
				return nil
			}
			out := map[string]string{}
			for _, kv := range strings.Split(v, ";") {
				k, val, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("%s: %q is not key=value", name, kv)
				}
				out[k] = val
			}
			*f(m) = out
			return nil
		}}
}

var csvColumns = []csvColumn{
	strCol("name", func(m *Machine) *string { return &m.Name }),
	strCol("tag", func(m *Machine) *string { return &m.Tag }),
	strCol("enclosure", func(m *Machine) *string { return &m.Enclosure }),
	intCol("bay", func(m *Machine) *int { return &m.Bay }),
	strCol("rack", func(m *Machine) *string { return &m.Rack }),
	intCol("unit", func(m *Machine) *int { return &m.Unit }),
	strCol("vendor", func(m *Machine) *string { return &m.Vendor }),
	strCol("model", func(m *Machine) *string { return &m.Model }),
	strCol("serial", func(m *Machine) *string { return &m.Serial }),
	strCol("uuid", func(m *Machine) *string { return &m.UUID }),
	strCol("bios_version", func(m *Machine) *string { return &m.BIOSVersion }),
	strCol("role", func(m *Machine) *string { return &m.Role }),
	kvCol("labels", func(m *Machine) *map[string]string { return &m.Labels }),
	{"macs",
		func(m *Machine) (string, error) { return strings.Join(m.MACs, ";"), nil },
		func(m *Machine, v string) error {
			if v != "" {
				m.MACs = strings.Split(v, ";")
			}
			return nil
		}},
	{"memory_gb",
		func(m *Machine) (string, error) {
			if m.MemoryGB == 0 {
				return "", nil
			}
			return strconv.FormatFloat(m.MemoryGB, 'f', -1, 64), nil
		},
		func(m *Machine, v string) error {
			if v == "" {
				return nil
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("memory_gb %q is not a number", v)
			}
			m.MemoryGB = f
			return nil
		}},
	jsonCol("cpus", func(m *Machine) *[]CPU { return &m.CPUs }),
	jsonCol("dimms", func(m *Machine) *[]DIMM { return &m.DIMMs }),
	jsonCol("disks", func(m *Machine) *[]Disk { return &m.Disks }),
	jsonCol("nics", func(m *Machine) *[]NIC { return &m.NICs }),
	jsonCol("components", func(m *Machine) *[]Component { return &m.Components }),
	jsonCol("bmc", func(m *Machine) **BMC { return &m.BMC }),
	strCol("profile", func(m *Machine) *string { return &m.Profile }),
	jsonCol("once", func(m *Machine) **Once { return &m.Once }),
	strCol("hostname", func(m *Machine) *string { return &m.Hostname }),
	strCol("address", func(m *Machine) *string { return &m.Address }),
	strCol("gateway", func(m *Machine) *string { return &m.Gateway }),
	strCol("firmware", func(m *Machine) *string { return &m.Firmware }),
	strCol("kernel_args", func(m *Machine) *string { return &m.KernelArgs }),
	jsonCol("params", func(m *Machine) *map[string]string { return &m.Params }),
	strCol("notes", func(m *Machine) *string { return &m.Notes }),
}

// WriteMachinesCSV writes machines as CSV with a header row.
func WriteMachinesCSV(w io.Writer, ms []Machine) error {
	cw := csv.NewWriter(w)
	head := make([]string, len(csvColumns))
	for i, c := range csvColumns {
		head[i] = c.name
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for i := range ms {
		row := make([]string, len(csvColumns))
		for j, c := range csvColumns {
			v, err := c.get(&ms[i])
			if err != nil {
				return err
			}
			row[j] = v
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ParseMachinesCSV reads machines from CSV (a header row naming columns as
// WriteMachinesCSV writes them; any subset, in any order). Errors name the
// line.
func ParseMachinesCSV(data []byte) (*Document, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = 0
	head, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty: nothing to import")
	}
	if err != nil {
		return nil, err
	}
	byName := map[string]csvColumn{}
	for _, c := range csvColumns {
		byName[c.name] = c
	}
	cols := make([]csvColumn, len(head))
	for i, h := range head {
		c, ok := byName[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))]
		if !ok {
			known := slices.Sorted(maps.Keys(byName))
			return nil, fmt.Errorf("line 1: unknown column %q (columns: %s)", h, strings.Join(known, ", "))
		}
		cols[i] = c
	}
	doc := &Document{Version: DocumentVersion}
	var lines []int
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := r.FieldPos(0)
		var m Machine
		for i, v := range rec {
			if err := cols[i].set(&m, v); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
		doc.Machines = append(doc.Machines, m)
		lines = append(lines, line)
	}
	err = doc.check(func(_ string, i int) string {
		if i < len(lines) {
			return fmt.Sprintf("line %d: ", lines[i])
		}
		return ""
	})
	if err != nil {
		return nil, err
	}
	return doc, nil
}
