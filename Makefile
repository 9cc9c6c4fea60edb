# Rampart: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps hugepages build demo test test-unit test-dpdk test-vhost test-guests test-fuzz fuzz bench vm-image clean

all: build

deps:
	@scripts/deps.sh

hugepages:
	@scripts/hugepages.sh

build: deps
	$(CARGO) build --release --workspace --bins

demo: build hugepages
	@python3 scripts/demo.py

test: build hugepages
	@tests/run.sh

test-unit test-dpdk test-vhost test-guests: build hugepages
	@tests/run.sh $(patsubst test-%,%,$@)

test-fuzz: build
	@tests/run.sh fuzz

# libFuzzer on every target (FUZZ_SECONDS each, default 24), or those in FUZZ_TARGETS.
fuzz: deps
	@scripts/fuzz.sh $(FUZZ_TARGETS)

# The bench rig also needs OVS-DPDK (its ovs-ct DUT); `make test`/`make demo` do not.
bench: build hugepages
	@scripts/deps.sh bench
	python3 bench/rig.py

clean:
	$(CARGO) clean

# The service-VM image (vm-image/build.sh): target/vm-image/rampart.qcow2; prints its size.
vm-image: build
	@vm-image/build.sh
