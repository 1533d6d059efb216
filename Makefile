# Thin wrapper over CMake/ctest. `make run` and `make test` are the two commands a newcomer needs.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)
CONFIG     ?= conf/gateway.yaml
FUZZ_SECONDS ?= 20

.PHONY: all deps build build-asan build-fuzz run test test-unit fuzz fmt bench bench-ratelimit bench-metrics bench-idle bench-reload bench-tls bench-keys bench-bodies bench-workers docs screenshot clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DGW_SANITIZE=ON >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)

build-fuzz: deps
	@if command -v clang >/dev/null; then \
	  CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DGW_FUZZ=ON -DGW_TESTS=OFF >/dev/null && \
	  cmake --build $(BUILD_FUZZ) -j $(JOBS); \
	else echo "clang not found: skipping the fuzz build"; fi

run: build
	@scripts/run.sh $(BUILD) $(CONFIG)

# `make install [PREFIX=/usr/local] [DESTDIR=]`: the binary, the filters, the SDK, the configuration
# (PREFIX/etc/gateway, /etc/gateway for PREFIX=/usr), gateway(8) and the systemd unit; see docs/gateway.8.
PREFIX ?= /usr/local
.PHONY: install
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

test: build build-asan build-fuzz
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 300
	cd $(BUILD_ASAN) && ctest --output-on-failure -j 2 --timeout 300 -L asan
	@if [ -d $(BUILD_FUZZ) ]; then FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzzers.sh $(BUILD_FUZZ); fi

fuzz: build-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/run-fuzzers.sh $(BUILD_FUZZ)

# docs/filters.md from the built filters' settings tables (a test checks it is up to date)
docs: build
	python3 scripts/gen-filter-docs.py $(BUILD)/gateway $(BUILD)/plugins > docs/filters.md.tmp
	mv docs/filters.md.tmp docs/filters.md

# docs/console.png: the admin console at 1280x800, taken by the browser test (headless chromium)
screenshot: build
	cd $(BUILD) && GW_CONSOLE_SCREENSHOT=$(CURDIR)/docs/console.png ctest -R it.test_console_browser --output-on-failure

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

bench: build
	@scripts/install-deps.sh bench
	bench/run.sh $(BUILD)

bench-ratelimit: build
	@scripts/install-deps.sh bench
	bench/ratelimit.sh $(BUILD)

bench-metrics: build
	python3 -B bench/metrics_scrape.py $(BUILD)

# one SIGHUP a second under load against none, full pipeline (bench/reload_load.sh)
bench-reload: build
	@scripts/install-deps.sh bench
	bench/reload_load.sh $(BUILD)

# idle keep-alive client connections: RSS per connection, the gateway next to nginx (IDLE_CONNS, default 10000)
bench-idle: build
	@scripts/install-deps.sh bench
	python3 -B bench/idle_conns.py $(BUILD) $(or $(IDLE_CONNS),10000)

# TLS 1.3 listeners: keep-alive throughput, full handshakes and resumptions, the gateway next to nginx
bench-tls: build
	@scripts/install-deps.sh bench
	bench/tls.sh $(BUILD)

# key validation and rate limiting on Redis against the embedded store, 10,000 API keys rotating
bench-keys: build
	@scripts/install-deps.sh bench
	bench/keys.sh $(BUILD)

# 100 MB down and up (and slow readers) through the full pipeline: peak RSS must stay under 64 MiB
bench-bodies: build
	@scripts/install-deps.sh bench
	bench/bodies.sh $(BUILD)

# bench/run.sh with two workers for every proxy, all processes on both cores
bench-workers: build
	@scripts/install-deps.sh bench
	WORKERS=2 bench/run.sh $(BUILD)

# Container images (Dockerfile, docker-compose.yml) for machines with a Docker engine; nothing else needs one.
# `make docker`: the gateway image, gateway:latest. `make compose-up`: the whole stack in the background,
# once .env has ADMIN_PASSWORD (cp .env.example .env); `make compose-down` stops it (volumes are kept).
.PHONY: docker compose-up compose-down
docker:
	@command -v docker >/dev/null || { echo "docker not found: make docker needs the Docker CLI and a Docker engine" >&2; exit 1; }
	docker build -t gateway .

compose-up:
	@command -v docker >/dev/null && docker compose version >/dev/null 2>&1 || { echo "docker compose not found: make compose-up needs Docker with the Compose plugin (2.24 or newer) and a Docker engine" >&2; exit 1; }
	@grep -Eqs '^ADMIN_PASSWORD=([^"'"'"'[:space:]]|"[^"]|'"'"'[^'"'"'])' .env || { echo "no ADMIN_PASSWORD in .env: cp .env.example .env and set it there (the gateway refuses to start without it)" >&2; exit 1; }
	docker compose up --build -d
	@echo "gateway http://localhost:8081, Grafana http://127.0.0.1:3000, Prometheus http://127.0.0.1:9090 (ports: .env)"

compose-down:
	@command -v docker >/dev/null && docker compose version >/dev/null 2>&1 || { echo "docker compose not found: make compose-down needs Docker with the Compose plugin" >&2; exit 1; }
	docker compose down

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
