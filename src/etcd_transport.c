/*-------------------------------------------------------------------------
 *
 * etcd_transport.c
 *	  Talks to etcd: one POST of a JSON body to /v3/... over etcd's HTTP/JSON
 *	  gateway with libcurl, for the background worker only.
 *
 * A request that fails on one endpoint (no connection, a timeout, a 5xx
 * answer, an answer that is not a JSON object, or a member without a
 * leader saying so) is tried on the next one, so losing one member of an
 * etcd cluster is not noticed.  With snowflake.etcd_username set it logs in
 * first, and again once when etcd has forgotten the token.  Every answer's
 * header is watched: its cluster_id (which changes when etcd's data is
 * wiped or restored) and its revision (which only moves forward, unless
 * etcd lost data).  Every failure is counted in
 * snowflake_status().etcd_errors.  Errors are raised with ereport; the
 * worker catches them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "etcd_client.h"
#include "etcd_json.h"
#include "etcd_transport.h"
#include "settings.h"
#include "shared_state.h"

/* Far more than any answer snowflake asks for (1024 keys, keys only). */
#define ETCD_MAX_RESPONSE	(1024 * 1024)

#define ETCD_AUTHENTICATE_PATH	"/v3/auth/authenticate"

static CURL *etcd_curl = NULL;
static List *etcd_endpoints = NIL;	/* of char *, without trailing '/' */
static int	etcd_current_endpoint = 0;
static char *etcd_token = NULL; /* auth token, when a user is set */

/* The body of the answer being read; allocated once, never grown. */
static char *etcd_body = NULL;
static size_t etcd_body_len = 0;
static bool etcd_body_too_large = false;

/*
 * cluster_id from the header of the last answer: it changes when etcd's
 * data is wiped or restored from a snapshot (a new cluster), which is how a
 * mark written before such a loss is told from one written since.
 */
static char etcd_last_cluster_id[32] = "";

/* Answers received by this process and their bytes, for the claim's log. */
static int64 etcd_answers = 0;
static int64 etcd_answer_bytes = 0;

/*
 * The highest header.revision seen, and whether an answer came with a lower
 * one since the caller last asked: etcd's revision only moves forward, so
 * that is etcd restored from a snapshot (or wiped), seen by this server.
 */
static int64 etcd_max_revision = 0;
static bool etcd_revision_regressed = false;

static void etcd_authenticate(void);
static void etcd_note_cluster_id(JsonbContainer *answer);

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
 * other one after a failure.  Fills *answer with the HTTP status (2xx or
 * 4xx) and the parsed answer, valid until the next call.
 */
void
etcd_call(const char *path, const char *body, EtcdAnswer *answer)
{
	int			count = list_length(etcd_endpoints);
	int			attempt;
	bool		authenticated_again = false;
	char	   *failure = NULL;
	StringInfoData failures;

	if (strcmp(path, ETCD_AUTHENTICATE_PATH) != 0 &&
		snowflake_etcd_username[0] && etcd_token == NULL)
		etcd_authenticate();

	initStringInfo(&failures);
	answer->path = path;
	answer->body = etcd_body;
	for (attempt = 0; attempt < count; attempt++)
	{
		const char *endpoint = list_nth(etcd_endpoints, etcd_current_endpoint);
		uint64		started = shared_state_monotonic_micros();

		CHECK_FOR_INTERRUPTS();
		answer->status = etcd_post_once(endpoint, path, body, &failure);
		if (answer->status == 0)
		{
			appendStringInfo(&failures, "%s%s", failures.len ? "; " : "", failure);
			etcd_count_error();
			etcd_current_endpoint = (etcd_current_endpoint + 1) % count;
			continue;
		}

		/* etcd forgets tokens (expiry, member restart): log in again, once. */
		if (answer->status == 401 && etcd_token && !authenticated_again &&
			strcmp(path, ETCD_AUTHENTICATE_PATH) != 0)
		{
			authenticated_again = true;
			etcd_token = NULL;
			etcd_authenticate();
			attempt--;
			continue;
		}

		answer->root = etcd_parse_answer(psprintf("%s%s", endpoint, path), &failure);

		/* Garbage, or a member without a leader saying so: ask another. */
		if (answer->root == NULL || etcd_unavailable(answer->root))
		{
			if (answer->root != NULL)
				failure = psprintf("%s%s: %s", endpoint, path,
								   etcd_error_in(answer));
			appendStringInfo(&failures, "%s%s", failures.len ? "; " : "", failure);
			etcd_count_error();
			etcd_current_endpoint = (etcd_current_endpoint + 1) % count;
			continue;
		}
		pg_atomic_write_u64(&snowflake_shared->etcd_latency_us,
							Max(shared_state_monotonic_micros() - started, 1));
		etcd_answers++;
		etcd_answer_bytes += etcd_body_len;
		etcd_note_cluster_id(answer->root);
		return;
	}

	ereport(ERROR,
			errcode(ERRCODE_CONNECTION_FAILURE),
			errmsg("no etcd endpoint answered %s: %s", path, failures.data));
}

/* Log in with snowflake.etcd_username; etcd then wants the token on calls. */
static void
etcd_authenticate(void)
{
	StringInfoData body;
	EtcdAnswer	answer;
	JsonbValue *token;
	const char *p;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"name\":");
	escape_json(&body, snowflake_etcd_username);
	appendStringInfoString(&body, ",\"password\":");
	escape_json(&body, snowflake_etcd_password);
	appendStringInfoChar(&body, '}');

	etcd_call(ETCD_AUTHENTICATE_PATH, body.data, &answer);
	etcd_check(&answer);
	token = etcd_field(answer.root, "token");
	if (token == NULL || token->type != jbvString || token->val.string.len == 0 ||
		token->val.string.len > 4096)
		etcd_reject(&answer, "no token");
	/* It goes into an HTTP header: printable ASCII only. */
	for (p = token->val.string.val; p < token->val.string.val + token->val.string.len; p++)
		if (*p < 0x21 || *p > 0x7e)
			etcd_reject(&answer, "the token has characters an HTTP header cannot carry");
	etcd_token = MemoryContextStrdup(TopMemoryContext,
									 pnstrdup(token->val.string.val, token->val.string.len));
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

/* How many answers this process received from etcd, and their bytes. */
void
etcd_traffic(int64 *answers, int64 *bytes)
{
	*answers = etcd_answers;
	*bytes = etcd_answer_bytes;
}
