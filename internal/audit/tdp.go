package audit

import (
	"regexp"
	"strings"
)

// cpuTDP is Intel's thermal design power (W) of the Xeons this homelab's
// machines take: the E5-2600 family of the BL460c Gen8 (v1, Sandy Bridge
// EP, and v2, Ivy Bridge EP) and the 5600/5500 series of the x3550 M3
// and the X4150's era, from Intel's product specifications.
var cpuTDP = map[string]float64{
	"E5-2603": 80, "E5-2609": 80, "E5-2620": 95, "E5-2630": 95, "E5-2630L": 60, "E5-2637": 80,
	"E5-2640": 95, "E5-2643": 130, "E5-2648L": 70, "E5-2650": 95, "E5-2650L": 70, "E5-2658": 95,
	"E5-2660": 95, "E5-2665": 115, "E5-2667": 130, "E5-2670": 115, "E5-2680": 130, "E5-2687W": 150, "E5-2690": 135,
	"E5-2603 v2": 80, "E5-2609 v2": 80, "E5-2618L v2": 50, "E5-2620 v2": 80, "E5-2630 v2": 80, "E5-2630L v2": 60,
	"E5-2637 v2": 130, "E5-2640 v2": 95, "E5-2643 v2": 130, "E5-2650 v2": 95, "E5-2650L v2": 70, "E5-2658 v2": 95,
	"E5-2660 v2": 95, "E5-2667 v2": 130, "E5-2670 v2": 115, "E5-2680 v2": 115, "E5-2687W v2": 150, "E5-2690 v2": 130,
	"E5-2695 v2": 115, "E5-2697 v2": 130,
	"E5603": 80, "E5606": 80, "E5607": 80, "E5620": 80, "E5630": 80, "E5640": 80, "E5645": 80, "E5649": 80,
	"L5609": 40, "L5618": 40, "L5630": 40, "L5638": 60, "L5640": 60, "X5647": 130, "X5650": 95, "X5660": 95,
	"X5667": 95, "X5670": 95, "X5672": 95, "X5675": 95, "X5677": 130, "X5680": 130, "X5687": 130, "X5690": 130,
	"E5504": 80, "E5506": 80, "E5520": 80, "E5530": 80, "E5540": 80, "L5520": 60, "X5550": 95, "X5560": 95, "X5570": 95,
	"E5405": 80, "E5410": 80, "E5420": 80, "E5430": 80, "E5440": 80, "E5450": 80, "X5460": 120, "L5420": 50,
}

var xeonModel = regexp.MustCompile(`\b([EXL]5-?\d{4}[LW]?)(?:\s+(v\d))?\b`)

// CPUTDP is the thermal design power of a CPU by its model string as
// /proc/cpuinfo or SMBIOS give it ("Intel(R) Xeon(R) CPU E5-2650 v2 @
// 2.60GHz"); ok is false for a model not in the table.
func CPUTDP(model string) (float64, bool) {
	m := xeonModel.FindStringSubmatch(ShortCPU(model))
	if m == nil {
		return 0, false
	}
	key := m[1]
	if m[2] != "" {
		key += " " + strings.ToLower(m[2])
	}
	w, ok := cpuTDP[key]
	return w, ok
}
