/* shared.h - process-lifetime blocks behind host->shared_block (main thread only). */
#ifndef GW_SHARED_H
#define GW_SHARED_H

#include <stddef.h>

/* The block for (filter, key): made zeroed on first use, the same one later; NULL if size differs. */
void *gw_shared_block(const char *filter, const char *key, size_t size);
/* At exit, after every generation is gone. */
void gw_shared_free_all(void);

#endif
