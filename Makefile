# flb-fanout build entry points. `make demo` and `make test` are the two commands a new
# machine needs; `.ci/setup` installs what they use.

CARGO        ?= cargo
# The oldest glibc the plugin must load on: AWS for Fluent Bit 2.x is Amazon Linux 2 (2.26).
GLIBC        ?= 2.26
# The architecture to build for: this machine's unless given. `make dist ARCH=aarch64` (or
# Docker's names, amd64 and arm64) cross-builds with zig.
HOST_ARCH    := $(shell uname -m | sed 's/^arm64$$/aarch64/')
ARCH         ?= $(HOST_ARCH)
override ARCH := $(patsubst arm64,aarch64,$(patsubst amd64,x86_64,$(ARCH)))
ifeq ($(filter $(ARCH),x86_64 aarch64),)
$(error ARCH=$(ARCH): only x86_64 (amd64) and aarch64 (arm64) are built)
endif
TARGET       := $(ARCH)-unknown-linux-gnu
# This machine's architecture goes to dist/ (what the tests load), another to dist/<arch>/.
DIST         ?= $(if $(filter $(ARCH),$(HOST_ARCH)),dist,dist/$(ARCH))
PLUGIN_SO    := target/$(TARGET)/release/libfanout.so

.PHONY: all setup setup-build setup-demo setup-browser setup-release release build dist test test-aarch64 core-wasm playground demo bench soak aot lint fmt bindings fuzz clean

all: dist

## setup: install the build and test tools this Makefile uses (idempotent)
setup:
	@bash .ci/setup

## setup-build: only what `make dist` needs
setup-build:
	@ARCH=$(ARCH) bash .ci/setup build

## setup-demo: only what `make demo` needs (setup-build, a C compiler, moto)
setup-demo:
	@ARCH=$(ARCH) bash .ci/setup demo

## setup-release: setup-build and cargo-cyclonedx (the SBOMs)
setup-release:
	@ARCH=$(ARCH) bash .ci/setup release

## setup-browser: setup-build and the browser's target and wasm-bindgen (playground, core-wasm)
setup-browser:
	@ARCH=$(ARCH) bash .ci/setup browser

## build: debug build of the whole workspace (native glibc; for development)
build:
	$(CARGO) build --workspace

## dist: release artifacts in dist/ — fanout.so linked against glibc <= $(GLIBC), k8s-metadata.wasm, static job-wrapper
dist: $(DIST)/fanout.so $(DIST)/k8s-metadata.wasm $(DIST)/job-wrapper

$(DIST)/fanout.so: setup-build FORCE
	$(CARGO) zigbuild --release -p fanout --target $(TARGET).$(GLIBC)
	@mkdir -p $(DIST)
	@# A new file renamed over the old one: a Fluent Bit running the old one keeps its inode
	@# (cp would rewrite the pages it has mapped, and it would crash).
	cp $(PLUGIN_SO) $@.tmp && mv -f $@.tmp $@

$(DIST)/k8s-metadata.wasm: setup-build FORCE
	$(CARGO) build --release -p k8s-metadata --target wasm32-wasip1
	@mkdir -p $(DIST)
	cp target/wasm32-wasip1/release/k8s_metadata.wasm $@

# Static (musl) so it runs in any Job image, distroless and scratch included.
$(DIST)/job-wrapper: setup-build FORCE
	$(CARGO) zigbuild --release -p job-wrapper --target $(ARCH)-unknown-linux-musl
	@mkdir -p $(DIST)
	cp target/$(ARCH)-unknown-linux-musl/release/job-wrapper $@

FORCE:

# The workspace's one version (what every artifact reports).
VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)

## release: dist/release/flb-fanout-$(VERSION)-linux-{x86_64,aarch64}.tar.gz (the three
##      artifacts, the configs, the manifests, LICENSE, README, CHANGELOG, a CycloneDX SBOM per
##      artifact from Cargo.lock) and their SHA256SUMS
release: setup-release
	$(MAKE) dist ARCH=x86_64
	$(MAKE) dist ARCH=aarch64
	bash tools/release.sh $(VERSION) x86_64 aarch64

## test: every test, against the dist build (what users load); on x86_64, the aarch64 build too
test: setup dist core-wasm playground release
	$(CARGO) test --workspace --no-fail-fast
ifeq ($(HOST_ARCH),x86_64)
	$(MAKE) test-aarch64
endif

# Runs this machine's binaries of the other architecture (Debian's qemu-user-static; the
# sysroot of libc6-arm64-cross for the dynamically linked test host and plugin).
AARCH64_QEMU  := qemu-aarch64-static -L /usr/aarch64-linux-gnu
# A Fluent Bit built for aarch64, when there is one, for a smoke test in the real host.
FLUENT_BIT_AARCH64 ?= $(abspath ../shared/fluent-bit/5.1.1-aarch64/bin/fluent-bit)
# real_firelens is the smoke test in a real aarch64 Fluent Bit; without one it says it skipped.
AARCH64_TESTS := --test dist_artifact --test abi --test lifecycle --test datadog --test firehose \
                 --test fanout --test release --test real_firelens

## test-aarch64: the aarch64 release files (`make dist ARCH=aarch64`) checked (ELF machine, glibc
##      floor, exported symbols, static wrapper) and run under qemu-user: the test host, built for
##      aarch64, loads the plugin and delivers to the Datadog and Firehose stand-ins; job-wrapper's
##      tests run on aarch64
test-aarch64: setup
	$(MAKE) dist ARCH=aarch64
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$(AARCH64_QEMU)" FANOUT_TEST_RUNNER="$(AARCH64_QEMU)" \
	FANOUT_SO=$(CURDIR)/dist/aarch64/fanout.so JOB_WRAPPER_BIN=$(CURDIR)/dist/aarch64/job-wrapper \
	FLUENT_BIT="$(wildcard $(FLUENT_BIT_AARCH64))" FLUENT_BIT_1_9= \
	  cargo-zigbuild test -p fanout-testhost --target aarch64-unknown-linux-gnu --no-fail-fast $(AARCH64_TESTS)
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static FANOUT_TEST_RUNNER=qemu-aarch64-static \
	  cargo-zigbuild test -p job-wrapper --target aarch64-unknown-linux-musl --no-fail-fast

## playground: the browser playground in dist/playground/ (open dist/playground/index.html)
playground: setup-browser
	$(CARGO) build -p fanout-playground --release --target wasm32-unknown-unknown
	wasm-bindgen --target no-modules --no-typescript --out-dir target/playground-bindgen \
	    target/wasm32-unknown-unknown/release/fanout_playground.wasm
	python3 playground/bundle.py target/playground-bindgen $(DIST)/playground

## core-wasm: fanout-core builds for the browser (wasm32-unknown-unknown): it stays free of I/O
core-wasm: setup-browser
	$(CARGO) build -p fanout-core --no-default-features --target wasm32-unknown-unknown

## demo: sample FireLens and Kubernetes records through the real plugin, no cloud, no Fluent Bit
demo: setup-demo $(DIST)/fanout.so
	$(CARGO) run -q -p fanout-testhost --bin fanout-demo

## aot: dist/k8s-metadata.aot, the WASM filter compiled ahead of time (3-4x less filter CPU
##      than WAMR's interpreter). WAMRC=/path/to/wamrc, built from the WAMR release the target
##      Fluent Bit bundles (WAMR-2.4.1 for 4.1.2-5.1.x); AOT_TARGET=x86_64 (default) or aarch64v8
WAMRC ?= wamrc
AOT_TARGET ?= x86_64
AOT_CPU ?= $(if $(filter x86_64,$(AOT_TARGET)),x86-64,generic)
aot: $(DIST)/k8s-metadata.wasm
	$(WAMRC) --target=$(AOT_TARGET) --cpu=$(AOT_CPU) --disable-simd -o $(DIST)/k8s-metadata.aot $<

## soak: the shipped FireLens config in a real Fluent Bit (FLUENT_BIT=...) for SOAK_MINUTES (30)
##       at SOAK_RATE records/s (200) with a fault cycle every SOAK_CYCLE_SECONDS (300): nothing
##       lost or twice, no memory growth, ledger and in-flight gauges back to 0. Not in `make test`.
soak: setup-build dist
	$(CARGO) run -q --release -p fanout-testhost --bin fanout-soak

## bench: benchmarks that print ratios against a baseline measured in the same run
##        (FLUENT_BIT=/path/to/fluent-bit adds the runs through a real Fluent Bit)
bench: setup-build dist
	$(CARGO) bench -p fanout --bench pipeline
	python3 bench/report.py
	$(CARGO) bench -p fanout --bench decode
	$(CARGO) bench -p fanout --bench firehose_billing
	python3 bench/job_wrapper.py
	$(CARGO) build --release -p wasm-floor --target wasm32-wasip1
	python3 bench/wasm_filter.py
	python3 -m pip install --quiet --disable-pip-version-check 'zstandard==0.25.0'
	python3 bench/end_to_end.py
	python3 bench/eks_path.py

## fuzz: run each cargo-fuzz target for FUZZ_SECONDS (stable toolchain: RUSTC_BOOTSTRAP, no sanitizer)
FUZZ_SECONDS ?= 20
fuzz: setup
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	for target in decode_chunk template wasm_filter_record; do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none --fuzz-dir fuzz $$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

## lint: formatting and clippy (warnings are errors), and cargo-deny (licenses, bans, sources)
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p fanout-core --no-default-features --target wasm32-unknown-unknown -- -D warnings
	$(CARGO) clippy -p fanout-playground --target wasm32-unknown-unknown -- -D warnings
	$(CARGO) deny --log-level error check licenses bans sources

fmt:
	$(CARGO) fmt --all

## bindings: regenerate plugin/src/ffi/bindings.rs from plugin/include/flb_proxy_abi.h (needs libclang)
bindings:
	$(CARGO) run -q -p fanout-abi-bindgen

clean:
	$(CARGO) clean
	rm -rf $(DIST) demo-out
