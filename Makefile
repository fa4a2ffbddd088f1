# snowflake: 64-bit, time-ordered, globally unique IDs for PostgreSQL

MODULE_big = snowflake
OBJS = \
	src/snowflake.o \
	src/layout.o \
	src/settings.o \
	src/shared_state.o \
	src/generator.o \
	src/functions.o \
	src/mark_store.o \
	src/mark_file.o \
	src/etcd_json.o \
	src/etcd_transport.o \
	src/etcd_client.o \
	src/node_lease.o \
	src/worker.o
PGFILEDESC = "snowflake - 64-bit time-ordered unique IDs"

EXTENSION = snowflake
DATA = snowflake--1.0.sql snowflake--1.0--1.1.sql snowflake--1.1--1.2.sql snowflake--1.2--1.3.sql

# Tests, after `make install`, as a user that may run PostgreSQL (not root;
# scripts/test.sh runs them as postgres in a copy of the tree it owns):
#   make installcheck          pg_regress (sql/, expected/)
#   make prove_installcheck    the TAP suites (test/t/*.pl), or only some:
#     make prove_installcheck PROVE_TESTS=test/t/003_settings.pl
# Both start their own preloaded throwaway servers: none has to be running.
REGRESS = setup layout layouts functions errors status catalog search_path convert_column marks layout_review
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/test/regress.conf

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags)
# libcurl talks to etcd (node ids leased from etcd).
SHLIB_LINK = $(shell curl-config --libs)

PROVE_TESTS ?= test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS's recipe (prove with PostgreSQL::Test's modules, PG_REGRESS and the
# server binaries on PATH), kept out of installcheck so that each runs alone.
.PHONY: prove_installcheck
prove_installcheck:
	$(prove_installcheck)

# make dist: the PGXN distribution snowflake-<version>.zip of the committed
# tree (HEAD), with the version of META.json, written to DIST_DIR (default:
# here).  `pgxn install ./snowflake-<version>.zip` builds and installs it.
DIST_DIR ?= .
DIST_VERSION = $(shell perl -MJSON::PP -e 'local $$/; print JSON::PP->new->decode(<STDIN>)->{version}' <$(srcdir)/META.json)
DIST_NAME = snowflake-$(DIST_VERSION)

.PHONY: dist
dist:
	@test -n "$(DIST_VERSION)" || { echo "no version in META.json" >&2; exit 1; }
	@git -C $(srcdir) diff --quiet HEAD -- || echo "make dist: uncommitted changes are not in $(DIST_NAME).zip (it holds HEAD)" >&2
	git -C $(srcdir) archive --format zip --prefix $(DIST_NAME)/ --output $(abspath $(DIST_DIR))/$(DIST_NAME).zip HEAD
