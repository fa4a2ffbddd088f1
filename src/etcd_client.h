/*-------------------------------------------------------------------------
 *
 * etcd_client.h
 *	  The few etcd v3 calls snowflake makes, over etcd's HTTP/JSON gateway.
 *
 * The calls are in etcd_client.c; the transport they share (endpoints,
 * failover, authentication, what every answer's header says) is in
 * etcd_transport.c; reading the answers' fields is in etcd_json.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_ETCD_CLIENT_H
#define SNOWFLAKE_ETCD_CLIENT_H

#include "nodes/pg_list.h"

/* One key as etcd returned it; value is NUL-terminated. */
typedef struct EtcdKeyValue
{
	bool		found;
	char	   *key;
	char	   *value;
	int64		mod_revision;
	int64		lease;
} EtcdKeyValue;

extern void etcd_client_open(void);
extern void etcd_count_error(void);
extern int64 etcd_lease_grant(int ttl, int *granted_ttl);
extern int	etcd_lease_keepalive(int64 lease_id);
extern void etcd_lease_revoke(int64 lease_id);
extern bool etcd_create_if_absent(const char *key, const char *value,
								  int64 lease_id, EtcdKeyValue *holder);
extern void etcd_get(const char *key, EtcdKeyValue *kv);

/* What a write guarded by the lease of another key came to. */
typedef enum EtcdGuardedResult
{
	ETCD_WRITTEN,
	ETCD_GUARD_LOST,			/* the guard key is not attached to the lease */
	ETCD_CHANGED				/* the key is not at the expected revision */
} EtcdGuardedResult;

extern EtcdGuardedResult etcd_guarded_put(const char *guard_key, int64 guard_lease,
										  const char *key, const char *value,
										  int64 mod_revision, EtcdKeyValue *current);
extern bool etcd_guarded_delete(const char *key, int64 lease_id);
extern List *etcd_list_keys(const char *key, const char *range_end);
extern void etcd_count_keys(int n, char *const *keys, char *const *ends,
							int64 *counts);
extern List *etcd_lease_keys(int64 lease_id);
extern char *etcd_printable(const char *text, int max_len);
extern const char *etcd_cluster_id(void);
extern bool etcd_take_revision_regression(void);
extern int64 etcd_longest_request_ms(void);
extern void etcd_traffic(int64 *answers, int64 *bytes);

#endif							/* SNOWFLAKE_ETCD_CLIENT_H */
