# Two entry points a newcomer needs: `make demo` (no broker) and `make check`
# (everything, the local Kafka included). See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
PS := $(VENV)/bin/persona-stream
DEMO := demo-out
PROFILES ?= 3000

.PHONY: setup build pgo demo test check kafka-start kafka-stop lint bench

# the package and its dependencies, nothing compiled: `make pgo` (setup) or `make build`
# (demo, test) compiles the per-event modules in place, where the training run of a
# profile-guided build can import those dependencies
$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools
	PERSONA_STREAM_PURE=1 $(VENV)/bin/pip install -q -e '.[test]'

setup: pgo

# the per-event modules compiled in place again after an edit (setup.py; only what
# changed is rebuilt); the tests refuse to run on a compiled module older than its source.
# Quiet when it works; Cython's errors and a non-zero exit when a module does not compile
build: $(PY)
	@mkdir -p build
	@$(PY) setup.py -q build_ext --inplace > build/make-build.log 2>&1 || { \
	  grep -B1 -A12 'Error compiling' build/make-build.log || tail -n 30 build/make-build.log; \
	  exit 1; }
	@grep '^persona-stream' build/make-build.log || true

# every per-event module compiled again, profile-guided (setup.py, workers/pgo_workload.py;
# GCC 10 or later): what `make setup` and the Docker image build and the benchmarks
# measure (CI builds plainly, deploy/setup.sh). Fails unless the
# build was profile-guided
pgo: $(PY)
	@mkdir -p build
	@PERSONA_STREAM_PGO=1 $(PY) setup.py -q build_ext --inplace > build/make-pgo.log 2>&1 || { \
	  grep -B1 -A12 'Error compiling' build/make-pgo.log || tail -n 30 build/make-pgo.log; \
	  exit 1; }
	@grep '^persona-stream' build/make-pgo.log || true
	@grep -q '^persona-stream: profile-guided build trained' build/make-pgo.log

demo: build
	$(PS) simulate --profiles $(PROFILES) --seed 7 --output $(DEMO)/touchpoints.jsonl.gz --truth $(DEMO)/truth.json --quiet
	$(PS) run $(DEMO)/touchpoints.jsonl.gz --out $(DEMO) --quiet
	$(PS) personas --from $(DEMO)
	@echo "first segment changes ($(DEMO)/segment_changes.jsonl):"
	@head -n 3 $(DEMO)/segment_changes.jsonl

# the test command .ci/run uses: unit and integration tests (needs the local Kafka)
test: build
	$(VENV)/bin/ruff check workers tests examples
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2 --dist loadgroup

# everything from scratch: set up, start the local Kafka, test, stop Kafka
check:
	bash .ci/run

kafka-start:
	deploy/kafka.sh start

kafka-stop:
	deploy/kafka.sh stop
