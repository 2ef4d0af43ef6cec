# The two commands a newcomer needs:
#   make demo   the agent deploys the sample app behind nginx (embedded default, no AWS)
#   make test   installs the test dependencies and runs the whole suite
#   make bench  benchmarks against peers on this machine (prints ratios)
.PHONY: demo test bench build clean

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

build:
	cargo build --locked --release

clean:
	cargo clean
