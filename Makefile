# Two commands do all set-up on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
CARGO ?= cargo
DESTDIR ?=

.PHONY: setup setup-vm setup-image setup-packages build image packages test vm-test vagrant-test demo bench clean install-host uninstall-host

setup:
	bash scripts/setup.sh

# The release binary, glibc linked in statically: the same file runs on any host and in the image.
# crt-static is set for the target only, so build scripts and proc macros stay dynamic.
TRIPLE := x86_64-unknown-linux-gnu
BIN := target/$(TRIPLE)/release/ncp-bootstrap
build:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --target $(TRIPLE)

test: setup
	# A hung namespace test must not eat CI's whole budget.
	timeout 1800 $(CARGO) test --lib --bins --tests --features fault-injection

demo: setup build
	$(BIN) demo

setup-vm: setup
	bash scripts/setup-vm.sh

setup-image: setup
	bash scripts/setup.sh podman crun conmon mmdebstrap file python3-yaml

# The image, built with no network (Debian base from mmdebstrap, the static binary, the bundle
# from bundle/ or a marked demo bundle): target/image/ncp-bootstrap.oci.tar. See
# units/container/build-image.sh.
image: setup-image build
	bash units/container/build-image.sh

setup-packages: setup
	bash scripts/setup.sh file containernetworking-plugins rpm
	CARGO=$(CARGO) bash scripts/setup-packages.sh

# The host packages, built offline from the static binary with the pinned cargo-deb and
# cargo-generate-rpm: target/packages/ncp-bootstrap_<version>_amd64.deb and
# ncp-bootstrap-<version>.x86_64.rpm (scripts/packages.sh).
packages: setup-packages build
	bash scripts/packages.sh

# The same scenario through Vagrant (vagrant-libvirt, local box, offline); slower, not in CI.
vagrant-test: setup-vm build
	bash scripts/setup.sh vagrant vagrant-libvirt libvirt-daemon-system dnsmasq-base rsync openssh-client
	timeout 2400 bash vagrant/harness/vagrant-test.sh

# Every VM scenario in a Debian VM (qemu, TCG): kernel OVS, enforcing AppArmor, reboots,
# NetworkManager, kill -9, hitless restarts, netplan on systemd-networkd, DHCP/SLAAC nodes, the
# image's pods under podman (daemonsets.sh), NSX's OVS kernel module (kmod.sh, a stand-in). The guest image is built once and reused by each
# scenario.
vm-test: setup-vm build image packages
	timeout 1500 bash vagrant/harness/vm-test.sh lifecycle.sh
	timeout 1200 bash vagrant/harness/vm-test.sh networkmanager.sh
	timeout 900 bash vagrant/harness/vm-test.sh crash.sh
	timeout 1200 bash vagrant/harness/vm-test.sh restart.sh
	timeout 900 bash vagrant/harness/vm-test.sh netplan.sh
	timeout 1200 bash vagrant/harness/vm-test.sh dhcp.sh
	timeout 900 bash vagrant/harness/vm-test.sh monitor.sh
	timeout 1500 bash vagrant/harness/vm-test.sh ncp-manifests.sh
	timeout 1200 bash vagrant/harness/vm-test.sh packages.sh
	timeout 1200 bash vagrant/harness/vm-test.sh kmod.sh

clean:
	$(CARGO) clean

# Every speed and size figure, measured in one run; the table goes to target/bench/report.md.
# Built like `make build`, so the figures are the shipped binary's. NCPB_BENCH_REUSE_VM_LOGS=1
# takes the VM rows from the logs `make vm-test` just kept (CI) instead of booting again.
bench: setup-vm
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) bench --locked --target $(TRIPLE) --bench report

# Installs the binary, the NCP release's CNI bundle (NCP_BUNDLE: a directory that mirrors the
# host), the AppArmor profile and the systemd units on a host, or under DESTDIR for packaging
# (units then in $(PREFIX)/lib/systemd/system). Refuses a bundle that lacks a file, listing all.
PREFIX ?= /usr
NCP_BUNDLE ?=
install-host: build
	NCP_BIN=$(BIN) bash scripts/install-host.sh install "$(NCP_BUNDLE)" "$(DESTDIR)" "$(PREFIX)"

uninstall-host:
	bash scripts/install-host.sh uninstall "" "$(DESTDIR)" "$(PREFIX)"
