# make test: every test stage through scripts/test.sh (see there); installs what is missing first.
test: setup-test
	@bash scripts/test.sh
