# hutch — the two entry points are `make serve` and `make test` (both as root).
.PHONY: serve test deps build bench lint

serve: deps ## Start hutch with its embedded defaults on 127.0.0.1:7770
	cargo run --release -p hutch -- serve

test: ## Run the whole test suite (installs missing Debian packages first)
	./scripts/test.sh

deps:
	./scripts/deps.sh

build:
	cargo build --release -p hutch

bench: deps build ## Benchmarks with same-run references
	./target/release/hutch bench lifecycle

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
