# provisiond: build, test, run.
#
#   sudo make deps    install the Debian packages provisiond and its tests use
#   make build        build bin/provisiond
#   sudo make test    go vet, gofmt check, unit and end-to-end tests (root)
#   make fuzz         every fuzz target in turn (FUZZTIME each, 5m default)
#   sudo make bench-deps  the peers the benchmarks compare against
#   sudo make bench   every benchmark, side by side with dnsmasq, tftpd-hpa, nginx
#   sudo make run     run the daemon on its embedded defaults

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN     := bin/provisiond

# Runtime: ipxe (binaries served), ipmitool (BMC control).
# Tests: iproute2 (namespaces), dnsmasq-base (the home router), qemu-system-x86
# and ovmf (real firmware), openipmi (ipmi_sim, the BMC) with gcc, libc6-dev
# and libopenipmi-dev (to build ipmi_sim's boot-flags module, which keeps the
# IPMI boot flags as a real BMC does), busybox-static and cpio (the test OS),
# util-linux (setpriv), ca-certificates, git; chromium and fonts-liberation
# (the dashboard's browser test); for the long Slurm test debootstrap,
# slurmctld, slurm-client and munge.
DEB_PACKAGES := ipxe ipmitool openipmi gcc libc6-dev libopenipmi-dev iproute2 dnsmasq-base qemu-system-x86 ovmf \
	busybox-static cpio util-linux ca-certificates git chromium fonts-liberation \
	debootstrap slurmctld slurm-client munge

# Benchmarks only: perfdhcp (kea-admin), nginx, tftpd-hpa, curl, xxd.
BENCH_PACKAGES := kea-admin nginx-light tftpd-hpa curl xxd

.PHONY: all build deps bench-deps test vet fmt-check unit e2e e2e-slurm fuzz bench run clean

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/provisiond

deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEB_PACKAGES)

bench-deps: deps
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BENCH_PACKAGES)

# Every benchmark in one run (bench/run; results in /tmp/provisiond-bench).
# Never part of make test: timings are not assertions.
bench:
	bash bench/run

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The end-to-end tests need root; as another user they skip and say why.
test: vet fmt-check
	$(GO) test -count=1 -timeout 20m ./...

unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

e2e:
	$(GO) test -count=1 -timeout 20m -v ./test/e2e/

# The long Slurm test: builds a real base image (debootstrap), runs munged and
# slurmctld in the lab, boots a node and waits for sinfo to show it idle.
e2e-slurm:
	PROVISIOND_E2E_SLURM=1 $(GO) test -count=1 -timeout 40m -v -run TestSlurmNodeRegisters ./test/e2e/

# Every fuzz target in turn, FUZZTIME each (go test -fuzz takes one target
# at a time). Crashers land in the package's testdata/fuzz and then run as
# regression tests with every go test.
FUZZTIME ?= 5m
FUZZ_TARGETS := ./internal/pxe:FuzzDHCP ./internal/pxe:FuzzTFTPPath ./internal/pxe:FuzzHTTPBoot \
	./internal/pxe:FuzzNormalizeMAC ./internal/profile:FuzzRender ./internal/inventory:FuzzImport
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg 2>&1 | tail -n 3; \
	done

run: build
	./$(BIN) serve

clean:
	rm -rf bin test/e2e/.cache
