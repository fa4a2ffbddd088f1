/*-------------------------------------------------------------------------
 *
 * snowflake.c
 *	  Entry point of the snowflake extension: 64-bit, time-ordered, unique
 *	  IDs made in shared memory.
 *
 * _PG_init only hands over to each part.  Where to look next: generator.c
 * makes IDs, layout.h is the bit layout, functions.c is the SQL surface,
 * settings.c the snowflake.* settings, shared_state.c the shared memory,
 * worker.c the background worker keeping the high-water mark, which
 * mark_store.c reads and writes; with etcd, node_lease.c holds the node id
 * through etcd_client.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "settings.h"
#include "shared_state.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/*
	 * Without preloading there is no shared memory for the generator, and
	 * PostgreSQL forbids defining postmaster-level settings: define nothing.
	 * The functions that need either say how to preload; the others work.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	/*
	 * pg_upgrade runs both clusters in binary-upgrade mode: no IDs are wanted
	 * there, and a worker would hold a database pg_upgrade must recreate.
	 */
	if (IsBinaryUpgrade)
		return;

	SettingsInit();
	SharedStateInit();

	/*
	 * Without a node id (or with a rejected setting) there is nothing to
	 * keep.
	 */
	if ((snowflake_node_id >= 0 ||
		 snowflake_node_source == SNOWFLAKE_NODE_SOURCE_ETCD) &&
		snowflake_rejected_setting == NULL)
		WorkerRegister();
}
