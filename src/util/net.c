/* Small socket helpers shared by the connection layers. */
#include <sys/socket.h>

#include "internal.h"

void sq__reset_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}
