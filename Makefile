# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo demo-imds demo-ecs demo-all test bench bench-short bench-storm chaos chaos-short lint format install package-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m devstack.demo

# The same service in its other two modes: DaemonSet (IMDS polling) and ECS.
demo-imds: $(STAMP)
	$(PY) -m devstack.demo_imds

demo-ecs: $(STAMP)
	$(PY) -m devstack.demo_ecs

demo-all: demo demo-imds demo-ecs

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Speed and memory targets (each script checks its own and exits 1 when one is missed).
bench: $(STAMP)
	$(PY) -m bench.parse
	$(PY) -m bench.burst

bench-short: $(STAMP)
	$(PY) -m bench.parse --rounds 300
	$(PY) -m bench.burst --nodes 12 --burst 6
	$(PY) -m bench.emulator --short
	$(PY) -m bench.storm --short

# The storm (bench/storm.py): 1,000 Spot warnings on 2,000 nodes, emulators in their own
# processes; several minutes. SHORT=1: the CI size (40 nodes, 10 warnings, under a minute).
# SCENARIO=hooks: 300 lifecycle hooks with running jobs. RUNS=3: medians of three runs.
# KUBE_API_QPS=1000: the service's default Kubernetes request budget (the benchmark's is off).
SCENARIO ?= spot
RUNS ?= 1
bench-storm: $(STAMP)
	$(PY) -m bench.storm --scenario $(SCENARIO) --runs $(RUNS) $(if $(SHORT),--short) \
		$(if $(KUBE_API_QPS),--kube-api-qps $(KUBE_API_QPS))

# The chaos suite (tests/chaos/): faults injected in front of the emulators, SIGKILLs,
# duplicates; every scenario for SEEDS seeds, then the invariant table. Several minutes.
# chaos-short (CI): tests/chaos/test_chaos.py, one seed per scenario, 4 nodes, about a minute.
SEEDS ?= 20
NODES ?= 4
chaos: $(STAMP)
	$(PY) -m tests.chaos --seeds $(SEEDS) --nodes $(NODES)

chaos-short: $(STAMP)
	LIFECYCLED_CHAOS=1 $(PY) -m pytest tests/chaos $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lifecycled devstack tests bench
	$(VENV)/bin/ruff format --check lifecycled devstack tests bench
	$(VENV)/bin/mypy --strict lifecycled devstack
	$(VENV)/bin/lint-imports  # the layer contracts in pyproject.toml

format: $(STAMP)
	$(VENV)/bin/ruff format lifecycled devstack tests bench
	$(VENV)/bin/ruff check --fix lifecycled devstack tests bench

# The image, the Helm chart and the AWS templates, checked offline (tools/package_check.py).
PACKAGE_STAMP := $(VENV)/.installed-package

$(PACKAGE_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,package]'
	touch $(PACKAGE_STAMP)

$(VENV)/bin/helm: tools/get_helm.py | $(PY)
	$(PY) tools/get_helm.py $@
	touch $@

package-check: $(PACKAGE_STAMP) $(VENV)/bin/helm
	$(VENV)/bin/ruff check tools
	$(VENV)/bin/ruff format --check tools
	$(PY) tools/package_check.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
