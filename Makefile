# The two commands a newcomer needs:
#   make demo   the agent deploys the sample app behind nginx (embedded default, no AWS)
#   make test   installs the test dependencies and runs the whole suite
#   make fleet-demo  a controller and three agents on this machine, deployed through the controller
#   make bench  benchmarks against peers on this machine (prints ratios)
#   make fuzz   every fuzz target for FUZZ_SECONDS (600) each, then execs/s and coverage per target
.PHONY: demo fleet-demo test bench fuzz build clean

demo:
	scripts/demo.sh

fleet-demo:
	scripts/fleet-demo.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

fuzz:
	scripts/fuzz.sh

build:
	cargo build --locked --release --workspace

clean:
	cargo clean
