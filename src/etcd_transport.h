/*-------------------------------------------------------------------------
 *
 * etcd_transport.h
 *	  One request to etcd, over its HTTP/JSON gateway.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SNOWFLAKE_ETCD_TRANSPORT_H
#define SNOWFLAKE_ETCD_TRANSPORT_H

#include "etcd_json.h"

extern void etcd_call(const char *path, const char *body, EtcdAnswer *answer);

#endif							/* SNOWFLAKE_ETCD_TRANSPORT_H */
