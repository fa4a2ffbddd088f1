/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background worker that keeps the high-water mark.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_WORKER_H
#define SNOWFLAKE_WORKER_H

extern void WorkerRegister(void);

#endif							/* SNOWFLAKE_WORKER_H */
