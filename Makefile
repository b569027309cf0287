# provisiond: build, test, run. On a fresh Debian, as root:
#
#   make run          install what the daemon needs (Debian packages, Go),
#                     build, and run it on its embedded defaults
#   make test         install what the tests need, then go vet, the gofmt
#                     check, the unit and end-to-end tests
#   make install      put the binary on PATH (/usr/local/bin/provisiond)
#   make build        build bin/provisiond
#   make fuzz         every fuzz target in turn (FUZZTIME each, 5m default)
#   make bench        every benchmark, side by side with dnsmasq, tftpd-hpa, nginx
#
# Package installs need root; as another user they say what to install.

GO_VERSION := 1.26.8
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN     := bin/provisiond

# Runtime: ipxe (binaries served), ipmitool (BMC control); curl and
# ca-certificates fetch Go when it is missing.
RUN_PACKAGES := ipxe ipmitool ca-certificates curl

# Tests: iproute2 (namespaces), dnsmasq-base (the home router), qemu-system-x86
# and ovmf (real firmware), openipmi (ipmi_sim, the BMC) with gcc, libc6-dev
# and libopenipmi-dev (to build ipmi_sim's boot-flags module, which keeps the
# IPMI boot flags as a real BMC does), busybox-static and cpio (the test OS),
# util-linux (setpriv), ca-certificates, git; chromium and fonts-liberation
# (the dashboard's browser test); for the long Slurm test debootstrap,
# slurmctld, slurm-client and munge; etcd-server (the etcd store's tests run
# a real etcd; Debian's service is not started by the tests, which run their own).
DEB_PACKAGES := ipxe ipmitool openipmi gcc libc6-dev libopenipmi-dev iproute2 dnsmasq-base qemu-system-x86 ovmf \
	busybox-static cpio util-linux ca-certificates git chromium fonts-liberation \
	debootstrap slurmctld slurm-client munge etcd-server

# Benchmarks only: perfdhcp (kea-admin), nginx, tftpd-hpa, curl, xxd, and
# trafgen (netsniff-ng), which floods a ProxyDHCP faster than it can answer:
# perfdhcp cannot, sharing two cores with the server.
BENCH_PACKAGES := kea-admin netsniff-ng nginx-light tftpd-hpa curl xxd

.PHONY: all build deps run-deps bench-deps toolchain test vet fmt-check unit e2e e2e-slurm fuzz bench run install clean kernel-tree

all: build

build: toolchain
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/provisiond

# apt installs the packages in $(1) that are missing (nothing to do, no
# apt-get update, when all are there).
define apt
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "provisiond: not root: install these first: apt-get install" $$missing; exit 0; fi; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing
endef

run-deps:
	$(call apt,$(RUN_PACKAGES))

deps: run-deps
	$(call apt,$(DEB_PACKAGES))

bench-deps: deps
	$(call apt,$(BENCH_PACKAGES))

# Go $(GO_VERSION) from go.dev into /usr/local/go, unless the go found is
# 1.26 or newer already (Debian 12's golang package is too old).
toolchain:
	@if $(GO) version 2>/dev/null | grep -qE 'go1\.(2[6-9]|[3-9][0-9])'; then exit 0; fi; \
	echo "installing Go $(GO_VERSION) into /usr/local/go"; \
	rm -rf /usr/local/go && curl -fsSL https://go.dev/dl/go$(GO_VERSION).linux-amd64.tar.gz | tar -C /usr/local -xz

# Every benchmark in one run (bench/run; results in /tmp/provisiond-bench).
# Never part of make test: timings are not assertions.
bench:
	bash bench/run

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The end-to-end tests need root; as another user they skip and say why.
test: deps toolchain vet fmt-check kernel-tree
	PROVISIOND_TEST_KERNEL="$$(ls -d $(CURDIR)/$(KERNEL_CACHE)/lib/modules/* 2>/dev/null | head -n1)" $(GO) test -count=1 -timeout 20m ./...

# Debian's kernel modules, unpacked from linux-image-amd64 (not installed:
# nothing runs), for the commissioning image's build test.
KERNEL_CACHE := test/e2e/.cache/kernel
kernel-tree:
	@if ls -d $(KERNEL_CACHE)/lib/modules/* $(KERNEL_CACHE)/boot/vmlinuz-* >/dev/null 2>&1; then exit 0; fi; \
	pkg=$$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image/ {print $$2; exit}'); \
	if [ -z "$$pkg" ]; then echo "provisiond: cannot resolve linux-image-amd64 (apt-get update first): the Debian kernel build test will skip"; exit 0; fi; \
	tmp=$$(mktemp -d) && (cd $$tmp && apt-get download -q $$pkg >/dev/null 2>&1) && \
	mkdir -p $(KERNEL_CACHE) && dpkg-deb -x $$tmp/*.deb $(KERNEL_CACHE) && rm -rf $(KERNEL_CACHE)/usr $(KERNEL_CACHE)/boot/System.map-* $(KERNEL_CACHE)/boot/config-*; rm -rf $$tmp

unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

e2e:
	$(GO) test -count=1 -timeout 20m -v ./test/e2e/

# The long Slurm test: builds a real base image (debootstrap), runs munged and
# slurmctld in the lab, boots a node and waits for sinfo to show it idle.
e2e-slurm:
	PROVISIOND_E2E_SLURM=1 $(GO) test -count=1 -timeout 40m -v -run TestSlurmPowerSaving ./test/e2e/

# Every fuzz target in turn, FUZZTIME each (go test -fuzz takes one target
# at a time). Crashers land in the package's testdata/fuzz and then run as
# regression tests with every go test.
FUZZTIME ?= 5m
FUZZ_TARGETS := ./internal/pxe:FuzzDHCP ./internal/dhcpwire:FuzzParse ./internal/pxe:FuzzTFTPPath ./internal/pxe:FuzzHTTPBoot \
	./internal/pxe:FuzzNormalizeMAC ./internal/profile:FuzzRender ./internal/inventory:FuzzImport
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg 2>&1 | tail -n 3; \
	done

run: run-deps build
	./$(BIN) serve

install: build
	install -D -m 0755 $(BIN) /usr/local/bin/provisiond

clean:
	rm -rf bin test/e2e/.cache
