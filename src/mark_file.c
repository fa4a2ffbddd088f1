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
 * mark in milliseconds since 1970-01-01 UTC (independent of the epoch).
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

/* Unix ms per node id; 0 for none.  Loaded once, then kept in step. */
static int64 mark_file_marks[SNOWFLAKE_MAX_NODE + 1];
static bool mark_file_loaded = false;

/* Milliseconds from the Unix epoch to snowflake.epoch. */
static int64
mark_file_epoch_offset(void)
{
	return snowflake_epoch / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

static void
mark_file_load(void)
{
	FILE	   *file;
	char		line[128];
	int			lineno = 0;

	if (mark_file_loaded)
		return;
	memset(mark_file_marks, 0, sizeof(mark_file_marks));
	file = AllocateFile(MARK_FILE_NAME, "r");
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					errcode_for_file_access(),
					errmsg("could not open file \"%s\": %m", MARK_FILE_NAME));
		mark_file_loaded = true;
		return;
	}
	while (fgets(line, sizeof(line), file) != NULL)
	{
		int			node;
		long long	unix_millis;
		char		extra;

		lineno++;
		if (lineno == 1 && strncmp(line, MARK_FILE_HEADER, strlen(MARK_FILE_HEADER)) == 0)
			continue;
		if (sscanf(line, "%d %lld %c", &node, &unix_millis, &extra) != 2 ||
			node < 0 || node > SNOWFLAKE_MAX_NODE || unix_millis < 0)
		{
			FreeFile(file);
			ereport(ERROR,
					errcode(ERRCODE_DATA_CORRUPTED),
					errmsg("line %d of file \"%s\" is not a high-water mark", lineno,
						   MARK_FILE_NAME),
					errhint("Each line must be a node id and milliseconds since "
							"1970-01-01 UTC. Correct the file rather than delete it: "
							"it holds this server's IDs above those it issued."));
		}
		mark_file_marks[node] = Max(mark_file_marks[node], (int64) unix_millis);
	}
	FreeFile(file);
	mark_file_loaded = true;
}

/* The node's mark in ms since snowflake.epoch; 0 when the file has none. */
int64
mark_file_read(int node)
{
	mark_file_loaded = false;	/* read it anew: it may have been edited */
	mark_file_load();
	if (mark_file_marks[node] == 0)
		return 0;
	return Max(mark_file_marks[node] - mark_file_epoch_offset(), 1);
}

/* Record the node's mark (ms since snowflake.epoch) durably. */
void
mark_file_write(int node, int64 mark_millis)
{
	StringInfoData contents;
	int			fd;
	int			i;

	mark_file_load();
	mark_file_marks[node] = mark_millis + mark_file_epoch_offset();

	initStringInfo(&contents);
	appendStringInfoString(&contents, MARK_FILE_HEADER "\n");
	for (i = 0; i <= SNOWFLAKE_MAX_NODE; i++)
		if (mark_file_marks[i] > 0)
			appendStringInfo(&contents, "%d " INT64_FORMAT "\n", i, mark_file_marks[i]);

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
