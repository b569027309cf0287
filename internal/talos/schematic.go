// Package talos knows the Talos Linux Image Factory: schematics and their
// IDs (computed exactly as the factory computes them), registration, and
// the URLs of a schematic's PXE assets.
package talos

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Schematic is an Image Factory schematic. Field names, order and YAML tags
// follow the factory's own model: the ID is the sha256 of this struct's
// YAML, so they must not change.
type Schematic struct {
	Overlay       Overlay       `yaml:"overlay,omitempty"`
	Customization Customization `yaml:"customization"`
}

// Customization is the schematic's image customisation.
type Customization struct {
	ExtraKernelArgs  []string         `yaml:"extraKernelArgs,omitempty"`
	Meta             []MetaValue      `yaml:"meta,omitempty"`
	SystemExtensions SystemExtensions `yaml:"systemExtensions,omitempty"`
	SecureBoot       SecureBoot       `yaml:"secureboot,omitempty"`
}

// MetaValue is an initial META value.
type MetaValue struct {
	Key   uint8  `yaml:"key"`
	Value string `yaml:"value"`
}

// SystemExtensions lists official extensions (the factory picks the
// versions that match the Talos version).
type SystemExtensions struct {
	OfficialExtensions []string `yaml:"officialExtensions,omitempty"`
}

// Overlay is a board overlay (not used for x86 servers).
type Overlay struct {
	Image   string         `yaml:"image"`
	Name    string         `yaml:"name"`
	Options map[string]any `yaml:"options,omitempty"`
}

// SecureBoot holds secure boot options.
type SecureBoot struct {
	IncludeWellKnownCertificates bool `yaml:"includeWellKnownCertificates,omitempty"`
}

// EmptyID is the well-known ID of the empty schematic (customization: {}).
const EmptyID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

// New returns the schematic for extensions and extra kernel arguments.
func New(extensions, extraKernelArgs []string) Schematic {
	var s Schematic
	s.Customization.SystemExtensions.OfficialExtensions = clean(extensions)
	s.Customization.ExtraKernelArgs = clean(extraKernelArgs)
	return s
}

func clean(in []string) []string {
	var out []string
	for _, v := range in {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// YAML is the schematic's canonical text (what the factory hashes).
func (s Schematic) YAML() ([]byte, error) {
	return yaml.Marshal(s)
}

// ID is the schematic's ID: the hex sha256 of its canonical YAML.
func (s Schematic) ID() (string, error) {
	raw, err := s.YAML()
	if err != nil {
		return "", fmt.Errorf("encoding schematic: %w", err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$`)

// ValidVersion checks a Talos version such as v1.9.5.
func ValidVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("version %q is not of the form v1.9.5 (a Talos release)", v)
	}
	return nil
}
