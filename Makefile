# Two commands do all set-up on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
CARGO ?= cargo
DESTDIR ?=

.PHONY: setup setup-vm build test vm-test vagrant-test demo bench clean install-host

setup:
	bash scripts/setup.sh

build:
	$(CARGO) build --release

test: setup
	# A hung namespace test must not eat CI's whole budget.
	timeout 1800 $(CARGO) test --lib --bins --tests --features fault-injection

demo: setup build
	target/release/ncp-bootstrap demo

setup-vm: setup
	bash scripts/setup-vm.sh

# The same scenario through Vagrant (vagrant-libvirt, local box, offline); slower, not in CI.
vagrant-test: setup-vm build
	bash scripts/setup.sh vagrant vagrant-libvirt libvirt-daemon-system dnsmasq-base rsync openssh-client
	timeout 2400 bash vagrant/harness/vagrant-test.sh

# Every VM scenario in a Debian VM (qemu, TCG): kernel OVS, enforcing AppArmor, reboots,
# NetworkManager, kill -9. The image is built once and reused by each scenario.
vm-test: setup-vm build
	timeout 1500 bash vagrant/harness/vm-test.sh lifecycle.sh
	timeout 1200 bash vagrant/harness/vm-test.sh networkmanager.sh
	timeout 900 bash vagrant/harness/vm-test.sh crash.sh

clean:
	$(CARGO) clean

# Every speed and size figure, measured in one run; the table goes to target/bench/report.md.
bench: setup-vm
	$(CARGO) bench --bench report

# Installs the binary, the bundle's shipped files and the systemd units on a host (DESTDIR for
# packaging). The NSX CNI plugin binary itself comes with the NCP release.
PREFIX ?= /usr
install-host: build
	install -D -m 0755 target/release/ncp-bootstrap $(DESTDIR)$(PREFIX)/bin/ncp-bootstrap
	install -D -m 0644 distro/cni/10-nsx.conflist $(DESTDIR)$(PREFIX)/share/ncp-bootstrap/bundle/etc/cni/net.d/10-nsx.conflist
	install -D -m 0644 distro/cni/99-loopback.conf $(DESTDIR)$(PREFIX)/share/ncp-bootstrap/bundle/etc/cni/net.d/99-loopback.conf
	install -D -m 0644 distro/ubuntu/apparmor/ncp-apparmor $(DESTDIR)$(PREFIX)/share/ncp-bootstrap/bundle/etc/apparmor.d/ncp-apparmor
	install -D -m 0644 units/systemd/ncp-bootstrap.service $(DESTDIR)/etc/systemd/system/ncp-bootstrap.service
	install -D -m 0644 units/systemd/ncp-ovs.service $(DESTDIR)/etc/systemd/system/ncp-ovs.service
	install -D -m 0644 units/systemd/ncp-bootstrap-cleanup.service $(DESTDIR)/etc/systemd/system/ncp-bootstrap-cleanup.service
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/ncp-bootstrap/README.md
