# snowflake: 64-bit, time-ordered, globally unique IDs for PostgreSQL

MODULE_big = snowflake
OBJS = \
	src/snowflake.o \
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
DATA = snowflake--1.0.sql snowflake--1.0--1.1.sql snowflake--1.1--1.2.sql

# pg_regress starts its own preloaded throwaway server (no installcheck
# against a stranger's server is needed).
REGRESS = setup layout functions errors status catalog search_path convert_column marks
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/test/regress.conf

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags)
# libcurl talks to etcd (node ids leased from etcd).
SHLIB_LINK = $(shell curl-config --libs)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
