/*-------------------------------------------------------------------------
 *
 * mark_file.h
 *	  This data directory's own memory of its high-water marks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_MARK_FILE_H
#define SNOWFLAKE_MARK_FILE_H

#include "datatype/timestamp.h"

extern int64 mark_file_read(int node, int64 *etcd_revision);
extern void mark_file_write(int node, int64 mark_millis, int64 etcd_revision);
extern bool mark_file_other_epoch(TimestampTz *other, const char **other_layout);

#endif							/* SNOWFLAKE_MARK_FILE_H */
