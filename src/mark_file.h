/*-------------------------------------------------------------------------
 *
 * mark_file.h
 *	  This data directory's own memory of its high-water marks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_MARK_FILE_H
#define SNOWFLAKE_MARK_FILE_H

extern int64 mark_file_read(int node);
extern void mark_file_write(int node, int64 mark_millis);

#endif							/* SNOWFLAKE_MARK_FILE_H */
