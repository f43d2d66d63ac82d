/* squall.h — everything: the loop, coroutines, futures, streams, executor, sync and the
 * HTTP/1.1 request parser. */
#ifndef SQUALL_H
#define SQUALL_H

#include "squall/error.h"
#include "squall/loop.h"
#include "squall/coro.h"
#include "squall/future.h"
#include "squall/stream.h"
#include "squall/executor.h"
#include "squall/sync.h"
#include "squall/http_parser.h"

#endif
