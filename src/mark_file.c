/*-------------------------------------------------------------------------
 *
 * mark_file.c
 *	  This data directory's own memory of its high-water marks, in the file
 *	  snowflake.marks, for the background worker.
 *
 * The table in snowflake.database is the marks' home: replicated, dumped,
 * carried by pg_upgrade.  But a superuser can drop it (DROP EXTENSION), and
 * a node id whose mark has vanished must not be taken as fresh after a
 * restart.  So every reservation is also written here, in the data
 * directory, before the generator may use it: one line per node id with its
 * mark in milliseconds since 1970-01-01 UTC (independent of the epoch),
 * and in etcd mode the etcd revision of the node's mark this server wrote
 * last: finding that very revision in etcd at the next claim proves that
 * nobody held the node id since.
 * The file is rewritten whole and renamed into place durably, so a crash
 * leaves either the old or the new one.  The worker reads the higher of
 * this file and the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "storage/fd.h"

#include "layout.h"
#include "mark_file.h"
#include "settings.h"

#define MARK_FILE_NAME		"snowflake.marks"
#define MARK_FILE_TEMP		"snowflake.marks.tmp"
#define MARK_FILE_HEADER	"snowflake marks 1"

/*
 * Per node id, the mark in ms since snowflake.epoch (0 for none), converted
 * from and to the file's Unix ms only where it is read and written.  Loaded
 * once, then kept in step.
 */
static int64 mark_file_marks[SNOWFLAKE_NODE_LIMIT];
static int64 mark_file_etcd_revisions[SNOWFLAKE_NODE_LIMIT];
static bool mark_file_loaded = false;

/* The epoch the file was written under, from its first line; 0: not said. */
static TimestampTz mark_file_epoch = 0;

/*
 * And its layout: files written before snowflake.layout existed name none,
 * and are of the original layout.
 */
static char mark_file_layout[SNOWFLAKE_LAYOUT_TEXT_LEN];

/*
 * Whether the file, as loaded so far, was written under another epoch or
 * layout: its marks are then of other IDs, and the worker refuses them.
 */
static bool
mark_file_of_other_ids(void)
{
	return (mark_file_epoch != 0 && mark_file_epoch != snowflake_epoch) ||
		strcmp(mark_file_layout, snowflake_layout.text) != 0;
}

static void
mark_file_load(void)
{
	FILE	   *file;
	char		line[256];
	int			lineno = 0;

	if (mark_file_loaded)
		return;
	memset(mark_file_marks, 0, sizeof(mark_file_marks));
	memset(mark_file_etcd_revisions, 0, sizeof(mark_file_etcd_revisions));
	mark_file_epoch = 0;
	strlcpy(mark_file_layout, SNOWFLAKE_ORIGINAL_LAYOUT, sizeof(mark_file_layout));
	file = AllocateFile(MARK_FILE_NAME, "r");
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					errcode_for_file_access(),
					errmsg("could not open file \"%s\": %m", MARK_FILE_NAME));
		/* No file: nothing was written under any other layout. */
		strlcpy(mark_file_layout, snowflake_layout.text, sizeof(mark_file_layout));
		mark_file_loaded = true;
		return;
	}
	while (fgets(line, sizeof(line), file) != NULL)
	{
		int			node;
		long long	unix_millis;
		long long	revision = 0;
		int			fields;
		char		extra;

		lineno++;
		if (lineno == 1 && strncmp(line, MARK_FILE_HEADER, strlen(MARK_FILE_HEADER)) == 0)
		{
			long long	epoch;
			const char *layout = strstr(line, " layout ");

			if (sscanf(line + strlen(MARK_FILE_HEADER), " epoch %lld", &epoch) == 1)
				mark_file_epoch = (TimestampTz) epoch;
			if (layout != NULL)
			{
				strlcpy(mark_file_layout, layout + strlen(" layout "),
						sizeof(mark_file_layout));
				mark_file_layout[strcspn(mark_file_layout, "\n")] = '\0';
			}
			continue;
		}

		/*
		 * Marks of another epoch or layout need not fit this one's node ids
		 * and range: leave them unread, so that the refusal names the header
		 * rather than calling the file corrupted.
		 */
		if (mark_file_of_other_ids())
			break;
		fields = sscanf(line, "%d %lld %lld %c", &node, &unix_millis, &revision, &extra);
		if ((fields != 2 && fields != 3) || revision < 0 ||
			node < 0 || node > snowflake_layout.max_node || unix_millis < 0 ||
			unix_millis - snowflake_epoch_unix_millis(snowflake_epoch) > snowflake_layout.max_millis)
		{
			FreeFile(file);
			ereport(ERROR,
					errcode(ERRCODE_DATA_CORRUPTED),
					errmsg("line %d of file \"%s\" is not a high-water mark of "
						   "snowflake.epoch", lineno, MARK_FILE_NAME),
					errhint("Each line must be a node id, milliseconds since "
							"1970-01-01 UTC and optionally an etcd revision. Correct the file rather than delete it: "
							"it holds this server's IDs above those it issued."));
		}
		/* 0 is none; a mark before the epoch still counts, as its first ms */
		if (unix_millis > 0)
			mark_file_marks[node] =
				Max(mark_file_marks[node],
					Max((int64) unix_millis - snowflake_epoch_unix_millis(snowflake_epoch), 1));
		mark_file_etcd_revisions[node] = (int64) revision;
	}
	FreeFile(file);
	mark_file_loaded = true;
}

/*
 * The node's mark in ms since snowflake.epoch (0 when the file has none),
 * and the etcd revision of the mark this server last wrote (0: none).
 */
int64
mark_file_read(int node, int64 *etcd_revision)
{
	mark_file_loaded = false;	/* read it anew: it may have been edited */
	mark_file_load();
	*etcd_revision = mark_file_etcd_revisions[node];
	return mark_file_marks[node];
}

/*
 * The epoch and layout the file's marks were written under, if they are not
 * the server's: the marks are absolute times, but IDs of another epoch or
 * layout would still collide with new ones (no table row may be left to say
 * so).  Returns false when the file says nothing or the same of both.
 */
bool
mark_file_other_epoch(TimestampTz *other, const char **other_layout)
{
	mark_file_loaded = false;
	mark_file_load();
	*other = mark_file_epoch;
	*other_layout = mark_file_layout;
	return mark_file_of_other_ids();
}

/* Record the node's mark (ms since snowflake.epoch) durably. */
void
mark_file_write(int node, int64 mark_millis, int64 etcd_revision)
{
	StringInfoData contents;
	int			fd;
	int			i;

	mark_file_load();
	/* Never relabel, nor drop, the marks of other IDs (they went unread). */
	if (mark_file_of_other_ids())
		ereport(ERROR,
				errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				errmsg("file \"%s\" holds marks of another snowflake.epoch or "
					   "snowflake.layout", MARK_FILE_NAME),
				errhint("Set snowflake.epoch and snowflake.layout back to those "
						"of the file's first line and restart the server."));
	mark_file_marks[node] = mark_millis;
	mark_file_etcd_revisions[node] = etcd_revision;

	initStringInfo(&contents);
	appendStringInfo(&contents, MARK_FILE_HEADER " epoch " INT64_FORMAT " layout %s\n",
					 snowflake_epoch, snowflake_layout.text);
	for (i = 0; i < SNOWFLAKE_NODE_LIMIT; i++)
		if (mark_file_marks[i] > 0)
			appendStringInfo(&contents, "%d " INT64_FORMAT " " INT64_FORMAT "\n", i,
							 mark_file_marks[i] + snowflake_epoch_unix_millis(snowflake_epoch),
							 mark_file_etcd_revisions[i]);

	fd = OpenTransientFile(MARK_FILE_TEMP, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				errcode_for_file_access(),
				errmsg("could not create file \"%s\": %m", MARK_FILE_TEMP));
	errno = 0;
	if (write(fd, contents.data, contents.len) != contents.len)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		errno = save_errno ? save_errno : ENOSPC;
		ereport(ERROR,
				errcode_for_file_access(),
				errmsg("could not write file \"%s\": %m", MARK_FILE_TEMP));
	}
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				errcode_for_file_access(),
				errmsg("could not close file \"%s\": %m", MARK_FILE_TEMP));
	/* fsyncs the new file before and the directory after the rename */
	(void) durable_rename(MARK_FILE_TEMP, MARK_FILE_NAME, ERROR);
	pfree(contents.data);
}
