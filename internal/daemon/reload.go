package daemon

import (
	"fmt"
	"maps"

	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
)

// machineParams are machine m's parameters (none for nil) over the
// config's defaults.
func machineParams(defaults map[string]string, m *inventory.Machine) map[string]string {
	out := maps.Clone(defaults)
	if out == nil {
		out = map[string]string{}
	}
	if m != nil {
		maps.Copy(out, m.Params)
	}
	return out
}

// reload reads the configuration and the profiles again and checks them as
// a start would; on any error the caller keeps what it has.
func reload(cur *config.Config, opts Options) (*config.Config, *profile.Set, error) {
	next := *cur
	if opts.LoadConfig != nil {
		var err error
		if next, err = opts.LoadConfig(); err != nil {
			return nil, nil, err
		}
		if err := next.Validate(); err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
	}
	set, err := profile.Load(opts.Builtin, next.ProfilesDir)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := set.Get(next.Boot.DefaultProfile); !ok {
		return nil, nil, fmt.Errorf("boot.default_profile %s is not a known profile", next.Boot.DefaultProfile)
	}
	return &next, set, nil
}
