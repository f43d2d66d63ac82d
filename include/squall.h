/** @file squall.h
 * Everything: the loop, coroutines, futures, streams, executor, sync, the HTTP
 * parser and utilities, the HTTP/1.1 server and the web framework, the HTTP and Redis clients, options. */
#ifndef SQUALL_H
#define SQUALL_H

#include "squall/error.h"
#include "squall/loop.h"
#include "squall/coro.h"
#include "squall/future.h"
#include "squall/stream.h"
#include "squall/tls.h"
#include "squall/executor.h"
#include "squall/sync.h"
#include "squall/http_parser.h"
#include "squall/httputil.h"
#include "squall/http.h"
#include "squall/web.h"
#include "squall/websocket.h"
#include "squall/client.h"
#include "squall/redis.h"
#include "squall/options.h"
#include "squall/process.h"
#include "squall/template.h"

#endif
