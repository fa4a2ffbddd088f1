/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The snowflake.* configuration parameters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_SETTINGS_H
#define SNOWFLAKE_SETTINGS_H

#include "datatype/timestamp.h"

/*
 * Fixed for the life of a data directory; 41 bits of ms reach 2093.  The
 * presets twitter, instagram and sonyflake bring their own.
 */
#define SNOWFLAKE_DEFAULT_EPOCH "2024-01-01 00:00:00+00"

typedef enum SnowflakeNodeSource
{
	SNOWFLAKE_NODE_SOURCE_GUC,
	SNOWFLAKE_NODE_SOURCE_ETCD
} SnowflakeNodeSource;

extern int	snowflake_node_id;
extern int	snowflake_node_source;
extern TimestampTz snowflake_epoch;
extern int	snowflake_max_clock_rollback;
extern int	snowflake_wait_timeout;
extern int	snowflake_reserve;
extern char *snowflake_database;
extern char *snowflake_etcd_endpoints;
extern char *snowflake_etcd_prefix;
extern int	snowflake_etcd_lease_ttl;
extern int	snowflake_etcd_timeout;
extern char *snowflake_etcd_cacert;
extern char *snowflake_etcd_cert;
extern char *snowflake_etcd_key;
extern char *snowflake_etcd_username;
extern char *snowflake_etcd_password;

/*
 * Set when the server configuration held a value for one of our
 * postmaster-level settings that its check rejected while the library was
 * being preloaded.  PostgreSQL then only warns and keeps the default, which
 * for the epoch or the node source would mean issuing IDs the operator did
 * not ask for; the generator refuses instead.
 */
extern const char *snowflake_rejected_setting;

extern void SettingsInit(void);
extern const char *settings_node_source_name(int source);
extern bool settings_etcd_in_use(void);

#endif							/* SNOWFLAKE_SETTINGS_H */
