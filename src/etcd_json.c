/*-------------------------------------------------------------------------
 *
 * etcd_json.c
 *	  Reads the fields of etcd's JSON answers for the etcd calls
 *	  (etcd_client.c) and the transport (etcd_transport.c).
 *
 * Answers are parsed with PostgreSQL's own JSON parser (jsonb_in, in the
 * transport) and keys and values go through PostgreSQL's base64; etcd sends
 * every 64-bit integer as a string.  An answer is trusted for nothing: a
 * field of the wrong type or out of range raises an error naming the call
 * and what was wrong, and is counted in snowflake_status().etcd_errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "etcd_client.h"
#include "etcd_json.h"

/* An answer that is not what etcd sends: count it, and say what was wrong. */
void
etcd_reject_because(const EtcdAnswer *answer, const char *reason)
{
	etcd_count_error();
	ereport(ERROR,
			errcode(ERRCODE_PROTOCOL_VIOLATION),
			errmsg("unexpected answer from etcd to %s: %s",
				   answer->path, reason));
	pg_unreachable();
}

/*
 * The error an etcd answer reports, or NULL: {"error":"..."} or
 * {"error":{...}}, or a status that is no success.
 */
char *
etcd_error_in(const EtcdAnswer *answer)
{
	JsonbValue *error = etcd_field(answer->root, "error");

	if (error == NULL)
		return answer->status >= 300 ?
			psprintf("HTTP status %ld", answer->status) : NULL;
	if (error->type == jbvString)
		return etcd_printable(pnstrdup(error->val.string.val, error->val.string.len), 200);
	return etcd_printable(answer->body, 200);
}

/* Raise the error an answer carries, if any. */
void
etcd_check(const EtcdAnswer *answer)
{
	char	   *error = etcd_error_in(answer);

	if (error)
	{
		etcd_count_error();
		ereport(ERROR,
				errcode(ERRCODE_CONNECTION_FAILURE),
				errmsg("etcd refused %s: %s", answer->path, error));
	}
}

/* A field of an object, or NULL when absent. */
JsonbValue *
etcd_field(JsonbContainer *object, const char *name)
{
	JsonbValue	key;

	key.type = jbvString;
	key.val.string.val = (char *) name;
	key.val.string.len = strlen(name);
	return findJsonbValueFromContainer(object, JB_FOBJECT, &key);
}

/* An object-valued field, or NULL when absent. */
JsonbContainer *
etcd_object_field(const EtcdAnswer *answer, JsonbContainer *object,
				  const char *name)
{
	JsonbValue *value = etcd_field(object, name);

	if (value == NULL)
		return NULL;
	if (value->type != jbvBinary || !JsonContainerIsObject(value->val.binary.data))
		etcd_reject(answer, "\"%s\" is not an object", name);
	return value->val.binary.data;
}

/* An array-valued field, or NULL when absent. */
JsonbContainer *
etcd_array_field(const EtcdAnswer *answer, JsonbContainer *object,
				 const char *name)
{
	JsonbValue *value = etcd_field(object, name);

	if (value == NULL)
		return NULL;
	if (value->type != jbvBinary || !JsonContainerIsArray(value->val.binary.data))
		etcd_reject(answer, "\"%s\" is not an array", name);
	return value->val.binary.data;
}

/* Element i of an array, which must be an object. */
JsonbContainer *
etcd_object_element(const EtcdAnswer *answer, JsonbContainer *array, int i)
{
	JsonbValue *value = getIthJsonbValueFromContainer(array, i);

	if (value == NULL || value->type != jbvBinary ||
		!JsonContainerIsObject(value->val.binary.data))
		etcd_reject(answer, "an array element is not an object");
	return value->val.binary.data;
}

/*
 * A 64-bit integer field, which etcd sends as a string of digits (a number
 * is accepted too).  Absent means 0, as etcd omits zero values.
 */
int64
etcd_int_field(const EtcdAnswer *answer, JsonbContainer *object,
			   const char *name)
{
	JsonbValue *value = etcd_field(object, name);
	char	   *text;
	char	   *end;
	int64		result;

	if (value == NULL)
		return 0;
	if (value->type == jbvString)
		text = pnstrdup(value->val.string.val, value->val.string.len);
	else if (value->type == jbvNumeric)
		text = DatumGetCString(DirectFunctionCall1(numeric_out,
												   NumericGetDatum(value->val.numeric)));
	else
		etcd_reject(answer, "\"%s\" is not an integer", name);

	errno = 0;
	result = strtoi64(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || strlen(text) > 20)
		etcd_reject(answer, "\"%s\" is not a 64-bit integer: \"%s\"", name,
					etcd_printable(text, 40));
	return result;
}

/* A base64 string, decoded and NUL-terminated; name says what it is. */
char *
etcd_base64_value(const EtcdAnswer *answer, JsonbValue *value, const char *name)
{
	char	   *decoded;
	int			len;

	if (value->type != jbvString)
		etcd_reject(answer, "\"%s\" is not a string", name);
	decoded = palloc(pg_b64_dec_len(value->val.string.len) + 1);
	len = pg_b64_decode(value->val.string.val, value->val.string.len, decoded,
						pg_b64_dec_len(value->val.string.len));
	if (len < 0)
		etcd_reject(answer, "\"%s\" is not base64", name);
	decoded[len] = '\0';
	if (strlen(decoded) != (size_t) len)
		etcd_reject(answer, "\"%s\" contains a NUL byte", name);
	return decoded;
}

/* A base64 field, decoded and NUL-terminated; absent means empty. */
char *
etcd_base64_field(const EtcdAnswer *answer, JsonbContainer *object,
				  const char *name)
{
	JsonbValue *value = etcd_field(object, name);

	return value == NULL ? pstrdup("") : etcd_base64_value(answer, value, name);
}

bool
etcd_bool_field(const EtcdAnswer *answer, JsonbContainer *object,
				const char *name)
{
	JsonbValue *value = etcd_field(object, name);

	if (value == NULL)
		return false;
	if (value->type != jbvBool)
		etcd_reject(answer, "\"%s\" is not a boolean", name);
	return value->val.boolean;
}

/* Whether value is the gRPC status code, as a number or a string. */
static bool
etcd_is_code(JsonbValue *value, const char *code)
{
	if (value == NULL)
		return false;
	if (value->type == jbvNumeric)
		return strcmp(DatumGetCString(DirectFunctionCall1(numeric_out,
														  NumericGetDatum(value->val.numeric))),
					  code) == 0;
	if (value->type == jbvString)
		return value->val.string.len == strlen(code) &&
			memcmp(value->val.string.val, code, value->val.string.len) == 0;
	return false;
}

/*
 * gRPC status 14 (unavailable: no leader, a timeout inside etcd), as a
 * unary call reports it ("code") or a streaming one ("error" object).
 */
bool
etcd_unavailable(JsonbContainer *root)
{
	JsonbValue *error = etcd_field(root, "error");

	if (error == NULL)
		return false;
	if (error->type == jbvBinary && JsonContainerIsObject(error->val.binary.data))
		return etcd_is_code(etcd_field(error->val.binary.data, "grpc_code"), "14");
	return etcd_is_code(etcd_field(root, "code"), "14");
}

char *
etcd_base64(const char *text)
{
	int			len = strlen(text);
	char	   *encoded = palloc(pg_b64_enc_len(len) + 1);
	int			encoded_len = pg_b64_encode(text, len, encoded, pg_b64_enc_len(len));

	if (encoded_len < 0)
		elog(ERROR, "could not encode \"%s\" in base64", text);
	encoded[encoded_len] = '\0';
	return encoded;
}

/* Fill kv from one element of a "kvs" array. */
static void
etcd_read_kv(const EtcdAnswer *answer, JsonbContainer *kv_object,
			 EtcdKeyValue *kv)
{
	kv->found = true;
	kv->value = etcd_base64_field(answer, kv_object, "value");
	kv->mod_revision = etcd_int_field(answer, kv_object, "mod_revision");
	kv->lease = etcd_int_field(answer, kv_object, "lease");
	if (kv->mod_revision <= 0)
		etcd_reject(answer, "a key has no valid mod_revision");
}

/* The first key of a range answer's "kvs", if any. */
void
etcd_read_range(const EtcdAnswer *answer, JsonbContainer *range,
				EtcdKeyValue *kv)
{
	JsonbContainer *kvs = range ? etcd_array_field(answer, range, "kvs") : NULL;

	memset(kv, 0, sizeof(*kv));
	kv->value = "";
	if (kvs != NULL && JsonContainerSize(kvs) > 0)
		etcd_read_kv(answer, etcd_object_element(answer, kvs, 0), kv);
}
