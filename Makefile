# eggroll-rs build entry points. `make demo` and `make test` work on a fresh Debian/Ubuntu
# machine: `deps` installs what the build needs, only when it is missing.

SHELL := /bin/bash
# rustup installs into ~/.cargo/bin, which a fresh shell may not have on its PATH yet.
export PATH := $(PATH):$(HOME)/.cargo/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: deps venv fate-venv fate-test fate-bench fate-demo test demo bench trial lint clean

# libclang: bindgen (RocksDB bindings) loads it at build time.
# build-essential: g++ for RocksDB's C++, and make. protoc is vendored by the build.
# python3 with venv: the project's virtual environment for the tests' Python peers.
# openssl: the systemd rehearsal makes its certificates with it. flock: scripts/venv.sh.
# prometheus (with promtool) and chromium: the observability test scrapes every daemon with a
# real Prometheus and loads the status pages in a real headless browser.
deps:
	@missing=""; \
	{ dpkg -s libclang-dev >/dev/null 2>&1 || ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; } \
		|| missing="$$missing libclang-dev"; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing build-essential"; \
	command -v make >/dev/null 2>&1 || missing="$$missing make"; \
	command -v python3 >/dev/null 2>&1 || missing="$$missing python3"; \
	python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v flock >/dev/null 2>&1 || missing="$$missing util-linux"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null 2>&1 \
			|| { echo "error: please install:$$missing (no apt-get on this machine)"; exit 1; }; \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update \
			&& $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@command -v cargo >/dev/null 2>&1 \
		|| { echo "error: cargo not found. Install Rust from https://rustup.rs, then rerun make."; exit 1; }

# The project's Python virtual environment (.venv, git-ignored): grpcio for the wire tests.
venv: deps
	@scripts/venv.sh >/dev/null

# The FATE venv (.venv-fate, git-ignored): FATE 2.2 from PyPI and our eggroll module in it.
fate-venv: deps
	@scripts/fate-venv.sh >/dev/null

# FATE's KVTable ops on eggroll-rs against FATE's standalone back end.
fate-test: deps
	scripts/fate-test.sh

# FATE's SecureBoost between two local eggroll-rs parties (each its cluster and roll-site),
# beside the same job on FATE's standalone back end.
fate-demo: deps
	scripts/fate-demo.sh

# FATE-style ops timed on eggroll-rs (embedded, local cluster) beside FATE standalone.
fate-bench: deps
	@scripts/fate-venv.sh >/dev/null
	cargo build --release -p eggroll
	EGGROLL_BIN=target/release/eggroll .venv-fate/bin/python python/tests/fate_bench.py

test: deps venv
	cargo test --release --workspace
	scripts/fate-test.sh

demo: deps
	cargo run --release -p eggroll -- demo

# The docker-compose two-party trial (needs a docker engine; pulls nothing).
trial: deps
	cargo build --release -p eggroll
	deploy/docker-compose/trial.sh target/release/eggroll

bench: deps
	cargo run --release -p eggroll -- bench

lint: deps
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings

clean:
	cargo clean
