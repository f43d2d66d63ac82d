/* The demo app's parts: each feature's handler classes live in a file of their own in
 * examples/demo/ and are routed from examples/demo.c. */
#ifndef SQUALL_DEMO_H
#define SQUALL_DEMO_H

#include <squall.h>

/* /gather: three concurrent sq_fetch calls of /async (examples/demo/gather.c). */
extern const sq_handler_class demo_gather_handler;

#endif
