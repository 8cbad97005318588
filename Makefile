# craftlb: every entry point. `make demo` and `make test` work on a fresh
# machine: both run setup first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: help setup build lint sanity test unit integration molecule demo bench bench-lambda bench-lb bench-scalein bench-collection bench-udp bench-build dist collection emulator lock clean

help:
	@echo "make demo        launch-lb.yml on the embedded emulator: nodes serve HTTP/TLS, scale out and in, teardown"
	@echo "make test        setup, build, lint, unit and integration tests"
	@echo "make molecule    the roles' molecule scenarios (real haproxy on loopback; the emulator)"
	@echo "make build       the module binary (bin/) + library/<module> links and generated docs"
	@echo "make bench       module benchmarks (figures, not assertions)"
	@echo "make bench-lambda  lifecycle Lambda: calls per event, latency, init, RSS, burst"
	@echo "make bench-lb    load balancer node: req/s vs direct, reloads under load, update_peers time"
	@echo "make bench-collection  the collection's size; a task by FQCN vs from library/"
	@echo "make bench-scalein  scale-in 3 -> 1 under load, DNS-caching clients: failed requests, drain times"
	@echo "make bench-udp   UDP through a node (nftables) vs direct vs nginx stream, 1 and 100 mappings"
	@echo "make bench-build the release profile's levers (LTO, codegen units), each on a cold target: time, memory, sizes"
	@echo "make collection  dist/craftlb-aws-<version>.tar.gz for x86_64 and arm64 (runs make dist)"
	@echo "make dist        arm64 modules and Lambda, tested under qemu (slow: ~15 min clean)"
	@echo "make sanity      ansible-test sanity on the installed collection"
	@echo "make emulator    run the AWS emulator in the foreground"
	@echo "make setup       install Debian packages, the Rust target, the Python venv"
	@echo "scripts/fresh-test.sh  make test as a fresh machine runs it (fresh clone, empty CARGO_HOME, target, venv, HOME)"

setup:
	@scripts/setup.sh

build: setup
	@scripts/build.sh

lint: build
	@scripts/test.sh lint

sanity: build
	scripts/sanity.sh

unit: build
	scripts/cargo.sh test --no-fail-fast --lib --bins

integration: build
	scripts/cargo.sh test --no-fail-fast --test '*'

# Every part runs even when an earlier one failed (cargo test with
# --no-fail-fast too), so one failure never hides the state of the rest;
# scripts/test.sh lists what failed and exits non-zero.
test: setup build
	@scripts/test.sh

# Role scenarios on this machine: loadbalancer (haproxy on 127.0.77.x /
# 127.0.78.x), update_route53_from_lambda (against the embedded emulator).
molecule: build
	@scripts/test.sh molecule

demo: build
	@scripts/demo.sh

bench: build
	@scripts/bench.sh

bench-lambda: build
	@scripts/bench-lambda.sh

bench-lb: build
	@scripts/bench-lb.sh

bench-scalein: build
	@scripts/bench-scalein.sh

bench-collection: build
	@scripts/bench-collection.sh

bench-udp: build
	@scripts/bench-udp.sh

bench-build: setup
	@scripts/bench-build.sh

dist: build
	@scripts/dist.sh

# The two-architecture tarball: make dist builds arm64, tests it under qemu
# and packs the collection (dist/craftlb-aws-<version>.tar.gz).
collection: dist

emulator: setup
	.venv/bin/python tests/emulator/server.py --port $${PORT:-5000}

lock:
	.venv/bin/pip freeze --all | grep -v -E '^(pip|setuptools)==' | \
	  { echo '# Full pinned closure of requirements.txt (pip freeze); setup installs this.'; \
	    echo '# Regenerate: make lock'; cat; } > requirements.lock

clean:
	rm -rf library bin .stamps
	cargo clean
