/*-------------------------------------------------------------------------
 *
 * etcd_client.c
 *	  The few etcd v3 calls snowflake makes (leases, keys, guarded
 *	  transactions), for the background worker only.
 *
 * Each builds its JSON request, sends it with etcd_call() (the transport,
 * etcd_transport.c: endpoints, failover, authentication) and reads the
 * answer with the field readers of etcd_json.c, which raise an error for
 * anything that is not what etcd sends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "etcd_client.h"
#include "etcd_json.h"
#include "etcd_transport.h"

/* gRPC status etcd uses for a missing lease. */
#define ETCD_CODE_NOT_FOUND	5

/* Grant a lease of ttl seconds.  Returns its id; *granted_ttl what etcd gave. */
int64
etcd_lease_grant(int ttl, int *granted_ttl)
{
	EtcdAnswer	answer;
	int64		lease_id;
	int64		granted;

	etcd_call("/v3/lease/grant", psprintf("{\"TTL\":%d}", ttl), &answer);
	etcd_check(&answer);
	lease_id = etcd_int_field(&answer, answer.root, "ID");
	granted = etcd_int_field(&answer, answer.root, "TTL");
	if (lease_id <= 0)
		etcd_reject(&answer, "no lease ID");
	if (granted <= 0 || granted > 3600 * 24)
		etcd_reject(&answer, "the lease's TTL is %lld", (long long) granted);
	*granted_ttl = (int) granted;
	return lease_id;
}

/*
 * Renew a lease.  Returns its TTL in seconds, or 0 when etcd no longer knows
 * the lease (it expired): the keys attached to it are gone.
 */
int
etcd_lease_keepalive(int64 lease_id)
{
	EtcdAnswer	answer;
	JsonbContainer *result;
	int64		ttl;

	etcd_call("/v3/lease/keepalive",
			  psprintf("{\"ID\":\"" INT64_FORMAT "\"}", lease_id), &answer);
	etcd_check(&answer);
	result = etcd_object_field(&answer, answer.root, "result");
	if (result == NULL)
		etcd_reject(&answer, "no \"result\"");
	if (etcd_field(result, "ID") != NULL && etcd_int_field(&answer, result, "ID") != lease_id)
		etcd_reject(&answer, "the answer is about another lease");
	ttl = etcd_int_field(&answer, result, "TTL");
	if (ttl > 3600 * 24)
		etcd_reject(&answer, "the lease's TTL is %lld", (long long) ttl);
	return ttl > 0 ? (int) ttl : 0;
}

/* Revoke a lease, deleting its keys; a lease etcd no longer knows is fine. */
void
etcd_lease_revoke(int64 lease_id)
{
	EtcdAnswer	answer;

	etcd_call("/v3/lease/revoke",
			  psprintf("{\"ID\":\"" INT64_FORMAT "\"}", lease_id), &answer);
	if (answer.status == 404 && etcd_int_field(&answer, answer.root, "code") == ETCD_CODE_NOT_FOUND)
		return;
	etcd_check(&answer);
}

/*
 * Create key with value, attached to the lease, only if the key does not
 * exist.  Returns true if it was created; otherwise *holder has the key as it
 * is (found is false if it vanished meanwhile).
 */
bool
etcd_create_if_absent(const char *key, const char *value, int64 lease_id,
					  EtcdKeyValue *holder)
{
	char	   *key64 = etcd_base64(key);
	EtcdAnswer	answer;
	JsonbContainer *responses;

	etcd_call("/v3/kv/txn",
			  psprintf("{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\","
					   "\"result\":\"EQUAL\",\"create_revision\":\"0\"}],"
					   "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\","
					   "\"lease\":\"" INT64_FORMAT "\"}}],"
					   "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
					   key64, key64, etcd_base64(value), lease_id, key64),
			  &answer);
	etcd_check(&answer);
	if (etcd_bool_field(&answer, answer.root, "succeeded"))
		return true;

	responses = etcd_array_field(&answer, answer.root, "responses");
	if (responses == NULL || JsonContainerSize(responses) != 1)
		etcd_reject(&answer, "a failed transaction without its range");
	etcd_read_range(&answer, etcd_object_field(&answer, etcd_object_element(&answer, responses, 0),
											   "response_range"), holder);
	return false;
}

void
etcd_get(const char *key, EtcdKeyValue *kv)
{
	EtcdAnswer	answer;

	etcd_call("/v3/kv/range",
			  psprintf("{\"key\":\"%s\"}", etcd_base64(key)), &answer);
	etcd_check(&answer);
	etcd_read_range(&answer, answer.root, kv);
}

/*
 * Put key = value (no lease) if guard_key is still attached to guard_lease
 * and key's mod_revision is still mod_revision (0: the key does not exist).
 * On ETCD_WRITTEN *current has the new mod_revision; on ETCD_CHANGED, the
 * key as it is now.  The guard makes sure only the holder of a node id ever
 * writes its mark, however wrong its idea of its lease is.
 */
EtcdGuardedResult
etcd_guarded_put(const char *guard_key, int64 guard_lease,
				 const char *key, const char *value, int64 mod_revision,
				 EtcdKeyValue *current)
{
	char	   *guard64 = etcd_base64(guard_key);
	char	   *key64 = etcd_base64(key);
	EtcdAnswer	answer;
	JsonbContainer *header;
	JsonbContainer *responses;
	EtcdKeyValue guard;

	etcd_call("/v3/kv/txn",
			  psprintf("{\"compare\":["
					   "{\"key\":\"%s\",\"target\":\"LEASE\",\"result\":\"EQUAL\","
					   "\"lease\":\"" INT64_FORMAT "\"},"
					   "{\"key\":\"%s\",\"target\":\"MOD\",\"result\":\"EQUAL\","
					   "\"mod_revision\":\"" INT64_FORMAT "\"}],"
					   "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}],"
					   "\"failure\":[{\"request_range\":{\"key\":\"%s\"}},"
					   "{\"request_range\":{\"key\":\"%s\"}}]}",
					   guard64, guard_lease, key64, mod_revision,
					   key64, etcd_base64(value), guard64, key64),
			  &answer);
	etcd_check(&answer);
	memset(current, 0, sizeof(*current));
	current->value = "";
	if (etcd_bool_field(&answer, answer.root, "succeeded"))
	{
		/* The put happened at the transaction's revision. */
		header = etcd_object_field(&answer, answer.root, "header");
		current->found = true;
		current->value = pstrdup(value);
		current->mod_revision = header ? etcd_int_field(&answer, header, "revision") : 0;
		if (current->mod_revision <= 0)
			etcd_reject(&answer, "no revision in the header");
		return ETCD_WRITTEN;
	}
	responses = etcd_array_field(&answer, answer.root, "responses");
	if (responses == NULL || JsonContainerSize(responses) != 2)
		etcd_reject(&answer, "a failed transaction without its two ranges");
	etcd_read_range(&answer, etcd_object_field(&answer, etcd_object_element(&answer, responses, 0),
											   "response_range"), &guard);
	if (!guard.found || guard.lease != guard_lease)
		return ETCD_GUARD_LOST;
	etcd_read_range(&answer, etcd_object_field(&answer, etcd_object_element(&answer, responses, 1),
											   "response_range"), current);
	return ETCD_CHANGED;
}

/* Delete key if it is attached to the lease.  Returns whether it was. */
bool
etcd_guarded_delete(const char *key, int64 lease_id)
{
	char	   *key64 = etcd_base64(key);
	EtcdAnswer	answer;

	etcd_call("/v3/kv/txn",
			  psprintf("{\"compare\":[{\"key\":\"%s\",\"target\":\"LEASE\","
					   "\"result\":\"EQUAL\",\"lease\":\"" INT64_FORMAT "\"}],"
					   "\"success\":[{\"request_delete_range\":{\"key\":\"%s\"}}]}",
					   key64, lease_id, key64),
			  &answer);
	etcd_check(&answer);
	return etcd_bool_field(&answer, answer.root, "succeeded");
}

/* Every key in [key, range_end), with its lease (no values). */
List *
etcd_list_keys(const char *key, const char *range_end)
{
	EtcdAnswer	answer;
	JsonbContainer *kvs;
	List	   *keys = NIL;
	int			i;

	etcd_call("/v3/kv/range",
			  psprintf("{\"key\":\"%s\",\"range_end\":\"%s\",\"keys_only\":true}",
					   etcd_base64(key), etcd_base64(range_end)),
			  &answer);
	etcd_check(&answer);
	kvs = etcd_array_field(&answer, answer.root, "kvs");
	for (i = 0; kvs != NULL && i < (int) JsonContainerSize(kvs); i++)
	{
		JsonbContainer *element = etcd_object_element(&answer, kvs, i);
		EtcdKeyValue *kv = palloc0(sizeof(EtcdKeyValue));

		kv->found = true;
		kv->key = etcd_base64_field(&answer, element, "key");
		kv->value = "";
		kv->lease = etcd_int_field(&answer, element, "lease");
		keys = lappend(keys, kv);
	}
	return keys;
}

/*
 * How many keys each of the n ranges [keys[i], ends[i]) holds, without the
 * keys: one transaction, so all are counted at the same revision.
 */
void
etcd_count_keys(int n, char *const *keys, char *const *ends, int64 *counts)
{
	StringInfoData body;
	EtcdAnswer	answer;
	JsonbContainer *responses;
	int			i;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"success\":[");
	for (i = 0; i < n; i++)
		appendStringInfo(&body, "%s{\"request_range\":{\"key\":\"%s\",\"range_end\":\"%s\","
						 "\"count_only\":true}}",
						 i > 0 ? "," : "", etcd_base64(keys[i]), etcd_base64(ends[i]));
	appendStringInfoString(&body, "]}");
	etcd_call("/v3/kv/txn", body.data, &answer);
	etcd_check(&answer);
	responses = etcd_array_field(&answer, answer.root, "responses");
	if (!etcd_bool_field(&answer, answer.root, "succeeded") || responses == NULL ||
		JsonContainerSize(responses) != n)
		etcd_reject(&answer, "not the %d counts asked for", n);
	for (i = 0; i < n; i++)
	{
		JsonbContainer *range = etcd_object_field(&answer,
												  etcd_object_element(&answer, responses, i),
												  "response_range");

		if (range == NULL)
			etcd_reject(&answer, "a count without its range");
		counts[i] = etcd_int_field(&answer, range, "count");
		if (counts[i] < 0)
			etcd_reject(&answer, "a negative count");
	}
}

/* The keys attached to a lease; none when etcd no longer knows it. */
List *
etcd_lease_keys(int64 lease_id)
{
	EtcdAnswer	answer;
	JsonbContainer *keys;
	List	   *result = NIL;
	int			i;

	etcd_call("/v3/lease/timetolive",
			  psprintf("{\"ID\":\"" INT64_FORMAT "\",\"keys\":true}", lease_id), &answer);
	etcd_check(&answer);
	keys = etcd_array_field(&answer, answer.root, "keys");
	for (i = 0; keys != NULL && i < (int) JsonContainerSize(keys); i++)
	{
		JsonbValue *key = getIthJsonbValueFromContainer(keys, i);

		if (key == NULL)
			etcd_reject(&answer, "a lease's key is missing");
		result = lappend(result, etcd_base64_value(&answer, key, "keys"));
	}
	return result;
}
