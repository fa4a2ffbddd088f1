/*-------------------------------------------------------------------------
 *
 * etcd_json.h
 *	  Reading etcd's JSON answers, field by field, trusting nothing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_ETCD_JSON_H
#define SNOWFLAKE_ETCD_JSON_H

#include "utils/jsonb.h"

#include "etcd_client.h"

/* One answer of etcd, as etcd_call() returns it. */
typedef struct EtcdAnswer
{
	const char *path;			/* the call answered, for messages */
	long		status;			/* HTTP status: 2xx or 4xx */
	const char *body;			/* the text received, until the next call */
	JsonbContainer *root;		/* the answer, a JSON object */
} EtcdAnswer;

extern void etcd_reject_because(const EtcdAnswer *answer, const char *reason)
			pg_attribute_noreturn();

/* Reject an answer: the reason is a format string and its arguments. */
#define etcd_reject(answer, ...) \
	etcd_reject_because((answer), psprintf(__VA_ARGS__))
extern void etcd_check(const EtcdAnswer *answer);
extern char *etcd_error_in(const EtcdAnswer *answer);
extern bool etcd_unavailable(JsonbContainer *root);

extern JsonbValue *etcd_field(JsonbContainer *object, const char *name);
extern JsonbContainer *etcd_object_field(const EtcdAnswer *answer,
										 JsonbContainer *object,
										 const char *name);
extern JsonbContainer *etcd_array_field(const EtcdAnswer *answer,
										JsonbContainer *object,
										const char *name);
extern JsonbContainer *etcd_object_element(const EtcdAnswer *answer,
										   JsonbContainer *array, int i);
extern int64 etcd_int_field(const EtcdAnswer *answer, JsonbContainer *object,
							const char *name);
extern char *etcd_base64_value(const EtcdAnswer *answer, JsonbValue *value,
							   const char *name);
extern char *etcd_base64_field(const EtcdAnswer *answer,
							   JsonbContainer *object, const char *name);
extern bool etcd_bool_field(const EtcdAnswer *answer, JsonbContainer *object,
							const char *name);
extern void etcd_read_range(const EtcdAnswer *answer, JsonbContainer *range,
							EtcdKeyValue *kv);
extern char *etcd_base64(const char *text);

#endif							/* SNOWFLAKE_ETCD_JSON_H */
