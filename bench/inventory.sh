#!/usr/bin/env bash
# Inventory: Go benchmarks over 10,000 machines: the database list, the
# lookups the boot path makes, GET /api/v1/machines and the audit.
#
#   bench/inventory.sh            (no root needed)
source "$(dirname "$0")/lib.sh"

# The whole-fleet operations 10 times each; the per-machine lookups for
# the usual second.
(cd "$REPO" && go test -count=1 -run '^$' -bench 'Machines10k|Audit10k' -benchmem -benchtime "${BENCHTIME:-10x}" \
	./internal/inventory ./internal/api ./internal/audit &&
	go test -count=1 -run '^$' -bench 'ByMAC10k|BootSettings10k' -benchmem ./internal/inventory &&
	go test -count=1 -run '^$' -bench 'Dashboard1k' -benchmem -benchtime "${BENCHTIME:-10x}" ./internal/web) | tee "$WORK/inventory.out" >&2

result "" "## Inventory (Go benchmarks, 10,000 machines)" "" \
	"| benchmark | time per operation | allocated per operation |" "|---|---|---|"
awk '/^Benchmark/ {
	ns = $3; unit = "ns"
	if (ns >= 1e6) { ns /= 1e6; unit = "ms" } else if (ns >= 1e3) { ns /= 1e3; unit = "µs" }
	b = $5; bu = "B"
	if (b >= 1048576) { b /= 1048576; bu = "MiB" } else if (b >= 1024) { b /= 1024; bu = "KiB" }
	name = $1; sub(/-[0-9]+$/, "", name)
	printf "| %s | %.1f %s | %.1f %s |\n", name, ns, unit, b, bu
}' "$WORK/inventory.out" | tee -a "$OUT"
