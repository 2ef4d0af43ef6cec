# The two commands a newcomer needs:
#   make demo   the agent deploys the sample app behind nginx (embedded default, no AWS)
#   make test   installs the test dependencies and runs the whole suite
.PHONY: demo test build clean

demo:
	scripts/demo.sh

test:
	scripts/test.sh

build:
	cargo build --locked --release

clean:
	cargo clean
