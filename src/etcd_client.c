/*-------------------------------------------------------------------------
 *
 * etcd_client.c
 *	  The few etcd v3 calls snowflake makes, over etcd's HTTP/JSON gateway
 *	  with libcurl, used only by the background worker.
 *
 * Every call is one POST of a JSON body to /v3/...  A request that fails on
 * one endpoint (no connection, a timeout, a 5xx answer) is tried on the next
 * one, so losing one member of an etcd cluster is not noticed.  Answers are
 * read with PostgreSQL's own JSON parser (jsonb_in) and keys and values go
 * through PostgreSQL's base64; etcd sends every 64-bit integer as a string.
 *
 * An answer is trusted for nothing: one that is not the JSON expected, too
 * large, of the wrong type or out of range raises an error naming what was
 * wrong.  Every failure is counted in snowflake_status().etcd_errors.
 * Errors are raised with ereport; the worker catches them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <unistd.h>

#include "access/xlog.h"
#include "common/base64.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "etcd_client.h"
#include "settings.h"
#include "shared_state.h"

/* Far more than any answer snowflake asks for (1024 keys, keys only). */
#define ETCD_MAX_RESPONSE	(1024 * 1024)

/* gRPC status etcd uses for a missing lease. */
#define ETCD_CODE_NOT_FOUND	5

static CURL *etcd_curl = NULL;
static List *etcd_endpoints = NIL;	/* of char *, without trailing '/' */
static int	etcd_current_endpoint = 0;
static char *etcd_token = NULL;		/* auth token, when a user is set */

/* The body of the answer being read; allocated once, never grown. */
static char *etcd_body = NULL;
static size_t etcd_body_len = 0;
static bool etcd_body_too_large = false;

/* The call being made, for messages. */
static const char *etcd_call_path = NULL;

/*
 * cluster_id from the header of the last answer: it changes when etcd's
 * data is wiped or restored from a snapshot (a new cluster), which is how a
 * mark written before such a loss is told from one written since.
 */
static char etcd_last_cluster_id[32] = "";

/*
 * The highest header.revision seen, and whether an answer came with a lower
 * one since the caller last asked: etcd's revision only moves forward, so
 * that is etcd restored from a snapshot (or wiped), seen by this server.
 */
static int64 etcd_max_revision = 0;
static bool etcd_revision_regressed = false;

static void etcd_authenticate(void);
static void etcd_note_cluster_id(JsonbContainer *answer);
static bool etcd_unavailable(JsonbContainer *answer);
static JsonbValue *etcd_field(JsonbContainer *object, const char *name);
static char *etcd_error_in(JsonbContainer *answer, long status);

/* Every failure of a call to etcd, for snowflake_status().etcd_errors. */
void
etcd_count_error(void)
{
	pg_atomic_fetch_add_u64(&snowflake_shared->etcd_errors, 1);
}

/*
 * text cut to max_len bytes, with every byte that is not printable ASCII
 * shown as '?': what etcd sent goes into messages and snowflake_status(),
 * which must stay valid in the database encoding.
 */
char *
etcd_printable(const char *text, int max_len)
{
	char	   *copy = pnstrdup(text, max_len);
	char	   *p;

	for (p = copy; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
			*p = '?';
	return copy;
}

/* An answer that is not what etcd sends: count it, and say what was wrong. */
#define etcd_reject(...) \
	do { \
		char	   *etcd_reason_ = psprintf(__VA_ARGS__); \
		etcd_count_error(); \
		ereport(ERROR, \
				errcode(ERRCODE_PROTOCOL_VIOLATION), \
				errmsg("unexpected answer from etcd to %s: %s", \
					   etcd_call_path, etcd_reason_)); \
	} while (0)

/*
 * Parse snowflake.etcd_endpoints (already checked by its GUC hook) and set
 * up the one curl handle the worker reuses, so connections stay open.
 */
void
etcd_client_open(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	char	   *list = pstrdup(snowflake_etcd_endpoints);
	char	   *item;
	char	   *save;

	for (item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '/'))
			*--end = '\0';
		if (*item)
			etcd_endpoints = lappend(etcd_endpoints, item);
	}
	etcd_body = palloc(ETCD_MAX_RESPONSE + 1);
	MemoryContextSwitchTo(old);

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK ||
		(etcd_curl = curl_easy_init()) == NULL)
		ereport(FATAL,
				errmsg("could not initialize libcurl for etcd"));
}

/* libcurl's write callback: keep the answer, up to ETCD_MAX_RESPONSE. */
static size_t
etcd_receive(char *data, size_t size, size_t count, void *unused)
{
	size_t		len = size * count;

	if (len > ETCD_MAX_RESPONSE - etcd_body_len)
	{
		etcd_body_too_large = true;
		return 0;				/* makes libcurl abort the transfer */
	}
	memcpy(etcd_body + etcd_body_len, data, len);
	etcd_body_len += len;
	return len;
}

/*
 * POST body to one endpoint.  Returns the HTTP status, or 0 with *failure
 * set when there was no complete answer.
 */
static long
etcd_post_once(const char *endpoint, const char *path, const char *body,
			   char **failure)
{
	/* libcurl keeps the pointer until the next reset: not on the stack. */
	static char curl_error[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL;
	long		timeout_ms;
	char	   *url = psprintf("%s%s", endpoint, path);
	CURLcode	rc;
	long		status = 0;

	etcd_body_len = 0;
	etcd_body_too_large = false;
	curl_error[0] = '\0';

	curl_easy_reset(etcd_curl);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	if (etcd_token)
		headers = curl_slist_append(headers, psprintf("Authorization: %s", etcd_token));

	curl_easy_setopt(etcd_curl, CURLOPT_URL, url);
	curl_easy_setopt(etcd_curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(etcd_curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(etcd_curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	curl_easy_setopt(etcd_curl, CURLOPT_WRITEFUNCTION, etcd_receive);
	curl_easy_setopt(etcd_curl, CURLOPT_ERRORBUFFER, curl_error);
	/* Signals belong to PostgreSQL: no SIGALRM-based timeouts in libcurl. */
	curl_easy_setopt(etcd_curl, CURLOPT_NOSIGNAL, 1L);
	/*
	 * A request may not outlast a fifth of the lease: a keep-alive that
	 * answers after the fence is of no use, and the next endpoint needs time.
	 */
	timeout_ms = Min((long) snowflake_etcd_timeout, snowflake_etcd_lease_ttl * 200L);
	curl_easy_setopt(etcd_curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(etcd_curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	/* etcd is reached directly, never through a proxy from the environment. */
	curl_easy_setopt(etcd_curl, CURLOPT_NOPROXY, "*");
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(etcd_curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(etcd_curl, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (snowflake_etcd_cacert[0])
		curl_easy_setopt(etcd_curl, CURLOPT_CAINFO, snowflake_etcd_cacert);
	if (snowflake_etcd_cert[0])
		curl_easy_setopt(etcd_curl, CURLOPT_SSLCERT, snowflake_etcd_cert);
	if (snowflake_etcd_key[0])
		curl_easy_setopt(etcd_curl, CURLOPT_SSLKEY, snowflake_etcd_key);

	rc = curl_easy_perform(etcd_curl);
	curl_slist_free_all(headers);

	if (rc != CURLE_OK)
	{
		if (etcd_body_too_large)
			*failure = psprintf("%s: the answer is larger than %d bytes",
								url, ETCD_MAX_RESPONSE);
		else
		{
			/*
			 * libcurl's own wording, not its error buffer: the buffer has
			 * timings in it, and the same failure must read the same each
			 * time to be logged once.
			 */
			*failure = psprintf("%s: %s", url, curl_easy_strerror(rc));
		}
		return 0;
	}
	curl_easy_getinfo(etcd_curl, CURLINFO_RESPONSE_CODE, &status);
	etcd_body[etcd_body_len] = '\0';
	if (status >= 500 || status < 200)
	{
		*failure = psprintf("%s: HTTP status %ld: %s", url, status,
							etcd_printable(etcd_body, 200));
		return 0;
	}
	return status;
}

/*
 * Parse the answer as JSON.  Returns NULL, with *failure set, when it is not
 * a JSON object: a member that sends garbage is treated like one that does
 * not answer.
 */
static JsonbContainer *
etcd_parse_answer(const char *url, char **failure)
{
	MemoryContext context = CurrentMemoryContext;
	Jsonb	   *volatile answer = NULL;
	char	   *volatile parse_error = NULL;

	if (strlen(etcd_body) != etcd_body_len)
	{
		*failure = psprintf("%s: the answer contains a NUL byte", url);
		return NULL;
	}

	PG_TRY();
	{
		answer = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													CStringGetDatum(etcd_body)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		parse_error = edata->message;
	}
	PG_END_TRY();

	if (parse_error)
		*failure = psprintf("%s: the answer is not JSON (%s): %s", url,
							etcd_printable(parse_error, 100),
							etcd_printable(etcd_body, 100));
	else if (!JsonContainerIsObject(&answer->root))
		*failure = psprintf("%s: the answer is not a JSON object: %s", url,
							etcd_printable(etcd_body, 100));
	else
		return &answer->root;
	return NULL;
}

/*
 * POST a JSON body to etcd: to the current endpoint first, then to each
 * other one after a failure.  Returns the HTTP status (2xx or 4xx) and the
 * parsed answer.
 */
static JsonbContainer *
etcd_call(const char *path, const char *body, long *status)
{
	int			count = list_length(etcd_endpoints);
	int			attempt;
	bool		authenticated_again = false;
	JsonbContainer *answer;
	char	   *failure = NULL;
	StringInfoData failures;

	initStringInfo(&failures);
	etcd_call_path = path;
	for (attempt = 0; attempt < count; attempt++)
	{
		const char *endpoint = list_nth(etcd_endpoints, etcd_current_endpoint);
		uint64		started = shared_state_monotonic_micros();

		CHECK_FOR_INTERRUPTS();
		*status = etcd_post_once(endpoint, path, body, &failure);
		if (*status == 0)
		{
			appendStringInfo(&failures, "%s%s", failures.len ? "; " : "", failure);
			etcd_count_error();
			etcd_current_endpoint = (etcd_current_endpoint + 1) % count;
			continue;
		}

		/* etcd forgets tokens (expiry, member restart): log in again, once. */
		if (*status == 401 && etcd_token && !authenticated_again &&
			strcmp(path, "/v3/auth/authenticate") != 0)
		{
			authenticated_again = true;
			etcd_token = NULL;
			etcd_authenticate();
			etcd_call_path = path;
			attempt--;
			continue;
		}

		answer = etcd_parse_answer(psprintf("%s%s", endpoint, path), &failure);

		/* Garbage, or a member without a leader saying so: ask another. */
		if (answer == NULL || etcd_unavailable(answer))
		{
			if (answer != NULL)
				failure = psprintf("%s%s: %s", endpoint, path,
								   etcd_error_in(answer, *status));
			appendStringInfo(&failures, "%s%s", failures.len ? "; " : "", failure);
			etcd_count_error();
			etcd_current_endpoint = (etcd_current_endpoint + 1) % count;
			continue;
		}
		pg_atomic_write_u64(&snowflake_shared->etcd_latency_us,
							Max(shared_state_monotonic_micros() - started, 1));
		etcd_note_cluster_id(answer);
		return answer;
	}

	ereport(ERROR,
			errcode(ERRCODE_CONNECTION_FAILURE),
			errmsg("no etcd endpoint answered %s: %s", path, failures.data));
	pg_unreachable();
}

/* The error an etcd answer reports, or NULL: {"error":"..."} or {"error":{...}}. */
static char *
etcd_error_in(JsonbContainer *answer, long status)
{
	JsonbValue	name;
	JsonbValue *error;

	name.type = jbvString;
	name.val.string.val = "error";
	name.val.string.len = 5;
	error = findJsonbValueFromContainer(answer, JB_FOBJECT, &name);
	if (error == NULL)
		return status >= 300 ? psprintf("HTTP status %ld", status) : NULL;
	if (error->type == jbvString)
		return etcd_printable(pnstrdup(error->val.string.val, error->val.string.len), 200);
	return etcd_printable(etcd_body, 200);
}

/* A field of an object, or NULL when absent. */
static JsonbValue *
etcd_field(JsonbContainer *object, const char *name)
{
	JsonbValue	key;

	key.type = jbvString;
	key.val.string.val = (char *) name;
	key.val.string.len = strlen(name);
	return findJsonbValueFromContainer(object, JB_FOBJECT, &key);
}

/* An object-valued field, or NULL when absent. */
static JsonbContainer *
etcd_object_field(JsonbContainer *object, const char *name)
{
	JsonbValue *value = etcd_field(object, name);

	if (value == NULL)
		return NULL;
	if (value->type != jbvBinary || !JsonContainerIsObject(value->val.binary.data))
		etcd_reject("\"%s\" is not an object", name);
	return value->val.binary.data;
}

/* An array-valued field, or NULL when absent. */
static JsonbContainer *
etcd_array_field(JsonbContainer *object, const char *name)
{
	JsonbValue *value = etcd_field(object, name);

	if (value == NULL)
		return NULL;
	if (value->type != jbvBinary || !JsonContainerIsArray(value->val.binary.data))
		etcd_reject("\"%s\" is not an array", name);
	return value->val.binary.data;
}

/* Element i of an array, which must be an object. */
static JsonbContainer *
etcd_object_element(JsonbContainer *array, int i)
{
	JsonbValue *value = getIthJsonbValueFromContainer(array, i);

	if (value == NULL || value->type != jbvBinary ||
		!JsonContainerIsObject(value->val.binary.data))
		etcd_reject("an array element is not an object");
	return value->val.binary.data;
}

/*
 * A 64-bit integer field, which etcd sends as a string of digits (a number
 * is accepted too).  Absent means 0, as etcd omits zero values.
 */
static int64
etcd_int_field(JsonbContainer *object, const char *name)
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
		etcd_reject("\"%s\" is not an integer", name);

	errno = 0;
	result = strtoi64(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || strlen(text) > 20)
		etcd_reject("\"%s\" is not a 64-bit integer: \"%s\"", name,
					etcd_printable(text, 40));
	return result;
}

/* A base64 field, decoded and NUL-terminated; absent means empty. */
static char *
etcd_base64_field(JsonbContainer *object, const char *name)
{
	JsonbValue *value = etcd_field(object, name);
	char	   *decoded;
	int			len;

	if (value == NULL)
		return pstrdup("");
	if (value->type != jbvString)
		etcd_reject("\"%s\" is not a string", name);
	decoded = palloc(pg_b64_dec_len(value->val.string.len) + 1);
	len = pg_b64_decode(value->val.string.val, value->val.string.len, decoded,
						pg_b64_dec_len(value->val.string.len));
	if (len < 0)
		etcd_reject("\"%s\" is not base64", name);
	decoded[len] = '\0';
	if (strlen(decoded) != (size_t) len)
		etcd_reject("\"%s\" contains a NUL byte", name);
	return decoded;
}

static bool
etcd_bool_field(JsonbContainer *object, const char *name)
{
	JsonbValue *value = etcd_field(object, name);

	if (value == NULL)
		return false;
	if (value->type != jbvBool)
		etcd_reject("\"%s\" is not a boolean", name);
	return value->val.boolean;
}

/*
 * gRPC status 14 (unavailable: no leader, a timeout inside etcd), as a
 * unary call reports it ("code") or a streaming one ("error" object).
 */
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

static bool
etcd_unavailable(JsonbContainer *answer)
{
	JsonbValue *error = etcd_field(answer, "error");

	if (error == NULL)
		return false;
	if (error->type == jbvBinary && JsonContainerIsObject(error->val.binary.data))
		return etcd_is_code(etcd_field(error->val.binary.data, "grpc_code"), "14");
	return etcd_is_code(etcd_field(answer, "code"), "14");
}

/* Raise the error an answer carries, if any. */
static void
etcd_check(JsonbContainer *answer, long status)
{
	char	   *error = etcd_error_in(answer, status);

	if (error)
	{
		etcd_count_error();
		ereport(ERROR,
				errcode(ERRCODE_CONNECTION_FAILURE),
				errmsg("etcd refused %s: %s", etcd_call_path, error));
	}
}

static char *
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
etcd_read_kv(JsonbContainer *kv_object, EtcdKeyValue *kv)
{
	kv->found = true;
	kv->value = etcd_base64_field(kv_object, "value");
	kv->mod_revision = etcd_int_field(kv_object, "mod_revision");
	kv->lease = etcd_int_field(kv_object, "lease");
	if (kv->mod_revision <= 0)
		etcd_reject("a key has no valid mod_revision");
}

/* The first key of a range answer's "kvs", if any. */
static void
etcd_read_range(JsonbContainer *range, EtcdKeyValue *kv)
{
	JsonbContainer *kvs = range ? etcd_array_field(range, "kvs") : NULL;

	memset(kv, 0, sizeof(*kv));
	kv->value = "";
	if (kvs != NULL && JsonContainerSize(kvs) > 0)
		etcd_read_kv(etcd_object_element(kvs, 0), kv);
}

/* Log in with snowflake.etcd_username; etcd then wants the token on calls. */
static void
etcd_authenticate(void)
{
	StringInfoData body;
	JsonbContainer *answer;
	JsonbValue *token;
	long		status;
	const char *p;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"name\":");
	escape_json(&body, snowflake_etcd_username);
	appendStringInfoString(&body, ",\"password\":");
	escape_json(&body, snowflake_etcd_password);
	appendStringInfoChar(&body, '}');

	answer = etcd_call("/v3/auth/authenticate", body.data, &status);
	etcd_check(answer, status);
	token = etcd_field(answer, "token");
	if (token == NULL || token->type != jbvString || token->val.string.len == 0 ||
		token->val.string.len > 4096)
		etcd_reject("no token");
	/* It goes into an HTTP header: printable ASCII only. */
	for (p = token->val.string.val; p < token->val.string.val + token->val.string.len; p++)
		if (*p < 0x21 || *p > 0x7e)
			etcd_reject("the token has characters an HTTP header cannot carry");
	etcd_token = MemoryContextStrdup(TopMemoryContext,
									 pnstrdup(token->val.string.val, token->val.string.len));
}

static void
etcd_ensure_authenticated(void)
{
	if (snowflake_etcd_username[0] && etcd_token == NULL)
		etcd_authenticate();
}

/* Grant a lease of ttl seconds.  Returns its id; *granted_ttl what etcd gave. */
int64
etcd_lease_grant(int ttl, int *granted_ttl)
{
	JsonbContainer *answer;
	long		status;
	int64		lease_id;
	int64		granted;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/lease/grant", psprintf("{\"TTL\":%d}", ttl), &status);
	etcd_check(answer, status);
	lease_id = etcd_int_field(answer, "ID");
	granted = etcd_int_field(answer, "TTL");
	if (lease_id <= 0)
		etcd_reject("no lease ID");
	if (granted <= 0 || granted > 3600 * 24)
		etcd_reject("the lease's TTL is %lld", (long long) granted);
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
	JsonbContainer *answer;
	JsonbContainer *result;
	long		status;
	int64		ttl;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/lease/keepalive",
					   psprintf("{\"ID\":\"" INT64_FORMAT "\"}", lease_id), &status);
	etcd_check(answer, status);
	result = etcd_object_field(answer, "result");
	if (result == NULL)
		etcd_reject("no \"result\"");
	if (etcd_field(result, "ID") != NULL && etcd_int_field(result, "ID") != lease_id)
		etcd_reject("the answer is about another lease");
	ttl = etcd_int_field(result, "TTL");
	if (ttl > 3600 * 24)
		etcd_reject("the lease's TTL is %lld", (long long) ttl);
	return ttl > 0 ? (int) ttl : 0;
}

/* Revoke a lease, deleting its keys; a lease etcd no longer knows is fine. */
void
etcd_lease_revoke(int64 lease_id)
{
	JsonbContainer *answer;
	long		status;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/lease/revoke",
					   psprintf("{\"ID\":\"" INT64_FORMAT "\"}", lease_id), &status);
	if (status == 404 && etcd_int_field(answer, "code") == ETCD_CODE_NOT_FOUND)
		return;
	etcd_check(answer, status);
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
	JsonbContainer *answer;
	JsonbContainer *responses;
	long		status;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/kv/txn",
					   psprintf("{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\","
								"\"result\":\"EQUAL\",\"create_revision\":\"0\"}],"
								"\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\","
								"\"lease\":\"" INT64_FORMAT "\"}}],"
								"\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
								key64, key64, etcd_base64(value), lease_id, key64),
					   &status);
	etcd_check(answer, status);
	if (etcd_bool_field(answer, "succeeded"))
		return true;

	responses = etcd_array_field(answer, "responses");
	if (responses == NULL || JsonContainerSize(responses) != 1)
		etcd_reject("a failed transaction without its range");
	etcd_read_range(etcd_object_field(etcd_object_element(responses, 0),
									  "response_range"), holder);
	return false;
}

void
etcd_get(const char *key, EtcdKeyValue *kv)
{
	JsonbContainer *answer;
	long		status;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/kv/range",
					   psprintf("{\"key\":\"%s\"}", etcd_base64(key)), &status);
	etcd_check(answer, status);
	etcd_read_range(answer, kv);
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
	JsonbContainer *answer;
	JsonbContainer *header;
	JsonbContainer *responses;
	EtcdKeyValue guard;
	long		status;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/kv/txn",
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
					   &status);
	etcd_check(answer, status);
	memset(current, 0, sizeof(*current));
	current->value = "";
	if (etcd_bool_field(answer, "succeeded"))
	{
		/* The put happened at the transaction's revision. */
		header = etcd_object_field(answer, "header");
		current->found = true;
		current->value = pstrdup(value);
		current->mod_revision = header ? etcd_int_field(header, "revision") : 0;
		if (current->mod_revision <= 0)
			etcd_reject("no revision in the header");
		return ETCD_WRITTEN;
	}
	responses = etcd_array_field(answer, "responses");
	if (responses == NULL || JsonContainerSize(responses) != 2)
		etcd_reject("a failed transaction without its two ranges");
	etcd_read_range(etcd_object_field(etcd_object_element(responses, 0),
									  "response_range"), &guard);
	if (!guard.found || guard.lease != guard_lease)
		return ETCD_GUARD_LOST;
	etcd_read_range(etcd_object_field(etcd_object_element(responses, 1),
									  "response_range"), current);
	return ETCD_CHANGED;
}

/* Delete key if it is attached to the lease.  Returns whether it was. */
bool
etcd_guarded_delete(const char *key, int64 lease_id)
{
	char	   *key64 = etcd_base64(key);
	JsonbContainer *answer;
	long		status;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/kv/txn",
					   psprintf("{\"compare\":[{\"key\":\"%s\",\"target\":\"LEASE\","
								"\"result\":\"EQUAL\",\"lease\":\"" INT64_FORMAT "\"}],"
								"\"success\":[{\"request_delete_range\":{\"key\":\"%s\"}}]}",
								key64, lease_id, key64),
					   &status);
	etcd_check(answer, status);
	return etcd_bool_field(answer, "succeeded");
}

/* Every key that starts with prefix, with its lease (no values). */
List *
etcd_list_keys(const char *prefix)
{
	char	   *range_end = pstrdup(prefix);
	size_t		len = strlen(prefix);
	JsonbContainer *answer;
	JsonbContainer *kvs;
	long		status;
	List	   *keys = NIL;
	int			i;

	/* The range [prefix, prefix with its last byte + 1) holds exactly those keys. */
	Assert(len > 0 && (unsigned char) prefix[len - 1] < 0x7f);
	range_end[len - 1]++;

	etcd_ensure_authenticated();
	answer = etcd_call("/v3/kv/range",
					   psprintf("{\"key\":\"%s\",\"range_end\":\"%s\",\"keys_only\":true}",
								etcd_base64(prefix), etcd_base64(range_end)),
					   &status);
	etcd_check(answer, status);
	kvs = etcd_array_field(answer, "kvs");
	for (i = 0; kvs != NULL && i < (int) JsonContainerSize(kvs); i++)
	{
		JsonbContainer *element = etcd_object_element(kvs, i);
		EtcdKeyValue *kv = palloc0(sizeof(EtcdKeyValue));

		kv->found = true;
		kv->key = etcd_base64_field(element, "key");
		kv->value = "";
		kv->lease = etcd_int_field(element, "lease");
		keys = lappend(keys, kv);
	}
	return keys;
}

/*
 * Remember header.cluster_id of an answer, a decimal uint64 sent as a
 * string, and watch header.revision.  Anything else leaves the last one in place: it is used only to
 * recognise marks, and an unknown id makes them unproven, never trusted.
 */
static void
etcd_note_cluster_id(JsonbContainer *answer)
{
	JsonbValue *header = etcd_field(answer, "header");
	JsonbValue *result = etcd_field(answer, "result");
	JsonbValue *revision;
	JsonbValue *id;
	int			i;

	/* A keep-alive's header sits inside its "result". */
	if (header == NULL && result != NULL && result->type == jbvBinary &&
		JsonContainerIsObject(result->val.binary.data))
		header = etcd_field(result->val.binary.data, "header");
	if (header == NULL || header->type != jbvBinary ||
		!JsonContainerIsObject(header->val.binary.data))
		return;
	revision = etcd_field(header->val.binary.data, "revision");
	if (revision != NULL && revision->type == jbvString && revision->val.string.len > 0 &&
		revision->val.string.len < 20)
	{
		char	   *text = pnstrdup(revision->val.string.val, revision->val.string.len);
		char	   *end;
		int64		value = strtoi64(text, &end, 10);

		if (*end == '\0' && value > 0)
		{
			if (value < etcd_max_revision)
				etcd_revision_regressed = true;
			etcd_max_revision = value < etcd_max_revision ? value : Max(value, etcd_max_revision);
		}
	}
	id = etcd_field(header->val.binary.data, "cluster_id");
	if (id == NULL || id->type != jbvString || id->val.string.len == 0 ||
		id->val.string.len >= (int) sizeof(etcd_last_cluster_id))
		return;
	for (i = 0; i < id->val.string.len; i++)
		if (id->val.string.val[i] < '0' || id->val.string.val[i] > '9')
			return;
	memcpy(etcd_last_cluster_id, id->val.string.val, id->val.string.len);
	etcd_last_cluster_id[id->val.string.len] = '\0';
}

/*
 * The longest one etcd request can keep the worker waiting: every endpoint
 * tried, each up to the per-request timeout.
 */
int64
etcd_longest_request_ms(void)
{
	return (int64) Min((long) snowflake_etcd_timeout, snowflake_etcd_lease_ttl * 200L) *
		Max(list_length(etcd_endpoints), 1);
}

/* Whether etcd's revision went back since the last call; clears it. */
bool
etcd_take_revision_regression(void)
{
	bool		regressed = etcd_revision_regressed;

	etcd_revision_regressed = false;
	return regressed;
}

/* The cluster_id etcd last answered with; "" before any answer. */
const char *
etcd_cluster_id(void)
{
	return etcd_last_cluster_id;
}
