#include "page.h"

#include <stdlib.h>
#include <string.h>

struct ks_page *ks_page_new(const void *bytes, size_t len, uint64_t version,
			    const struct timespec *mtime)
{
	struct ks_page *page = malloc(sizeof(*page) + len);

	if (!page)
		return NULL;
	atomic_init(&page->refs, 1);
	page->version = version;
	page->mtime = *mtime;
	page->len = len;
	if (len && bytes)
		memcpy(page->bytes, bytes, len);
	else if (len)
		memset(page->bytes, 0, len);
	return page;
}

struct ks_page *ks_page_ref(struct ks_page *page)
{
	atomic_fetch_add_explicit(&page->refs, 1, memory_order_relaxed);
	return page;
}

void ks_page_unref(struct ks_page *page)
{
	if (page && atomic_fetch_sub_explicit(&page->refs, 1,
					      memory_order_acq_rel) == 1)
		free(page);
}
