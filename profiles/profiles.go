// Package profiles embeds provisiond's built-in boot profiles: for each
// profile an iPXE template (NAME.ipxe) and a YAML sidecar (NAME.yaml) with its
// description and parameters. A profiles directory in the config overrides or
// adds to them.
package profiles

import "embed"

// FS holds the built-in profiles.
//
//go:embed *.ipxe *.yaml
var FS embed.FS
