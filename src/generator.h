/*-------------------------------------------------------------------------
 *
 * generator.h
 *	  Where IDs are made.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_GENERATOR_H
#define SNOWFLAKE_GENERATOR_H

extern int64 generator_take(int wanted, int *taken);
extern int64 generator_next_id(void);
extern int64 generator_clock_millis(void);

#endif							/* SNOWFLAKE_GENERATOR_H */
