# Two commands do all set-up on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
CARGO ?= cargo
DESTDIR ?=

.PHONY: setup build test demo bench clean

setup:
	bash scripts/setup.sh

build:
	$(CARGO) build --release

test: setup
	# A hung namespace test must not eat CI's whole budget.
	timeout 1800 $(CARGO) test --lib --bins --tests --features fault-injection

demo: setup build
	bash scripts/demo.sh target/release/ncp-bootstrap

clean:
	$(CARGO) clean

# Every speed and size figure, measured in one run; the table goes to target/bench/report.md.
bench: setup
	$(CARGO) bench --bench report
