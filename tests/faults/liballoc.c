/*
 * liballoc: a malloc family that misbehaves on purpose, to show that cowcheck's allocator rules
 * (docs/SEMANTICS.md part 14) catch each misbehaviour. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_ALLOC_FAULT=shared-large LD_PRELOAD=/path/liballoc.so"
 *
 * It misbehaves only in a program's processes (two forks below the executor: the zygote's
 * roots and their children), whose allocations are the program's own; the executor's and the
 * zygote's are left alone. Large means at least 128 KiB. COWCHECK_ALLOC_FAULT selects one fault:
 *   shared-large        large blocks come from a MAP_SHARED anonymous mapping (M1)
 *   calloc-dirty-reuse  large blocks get mappings of their own; free keeps the last one, and
 *                       calloc hands it out again without zeroing it (M3)
 *   realloc-lose-tail   a realloc that moves copies only the first half of the old block (M4)
 *
 * Build: cc -shared -fPIC -O2 -o liballoc.so liballoc.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern size_t malloc_usable_size(void *);

enum fault { NONE, SHARED_LARGE, CALLOC_DIRTY_REUSE, REALLOC_LOSE_TAIL };

#define LARGE (128 * 1024)
#define HEAD 16
#define SLOTS 256

static int depth;
static int fault = -1;

/* Blocks in mappings of our own: the mapping's start and length (0: a free slot). */
static struct { char *map; size_t len; } own[SLOTS];
/* calloc-dirty-reuse: the last freed mapping, kept for the next large calloc. */
static char *kept;
static size_t kept_len;

static void child(void)
{
	depth++;
}

static enum fault which(void)
{
	if (fault < 0) {
		const char *f = getenv("COWCHECK_ALLOC_FAULT");
		fault = NONE;
		if (f && !strcmp(f, "shared-large"))
			fault = SHARED_LARGE;
		else if (f && !strcmp(f, "calloc-dirty-reuse"))
			fault = CALLOC_DIRTY_REUSE;
		else if (f && !strcmp(f, "realloc-lose-tail"))
			fault = REALLOC_LOSE_TAIL;
		pthread_atfork(NULL, NULL, child);
	}
	return depth >= 2 ? (enum fault)fault : NONE;
}

__attribute__((constructor)) static void init(void)
{
	which();
}

static int slot_of(const void *p)
{
	for (int i = 0; i < SLOTS; i++)
		if (own[i].map && own[i].map + HEAD == (const char *)p)
			return i;
	return -1;
}

/* A block of n bytes in a mapping of our own (shared or private). */
static void *own_block(size_t n, int shared)
{
	int i = slot_of(NULL);
	for (i = 0; i < SLOTS && own[i].map; i++)
		;
	if (i == SLOTS)
		return NULL;
	size_t len = (n + HEAD + 4095) & ~(size_t)4095;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	own[i].map = m;
	own[i].len = len;
	return m + HEAD;
}

void *malloc(size_t n)
{
	enum fault f = which();
	if (n >= LARGE && (f == SHARED_LARGE || f == CALLOC_DIRTY_REUSE)) {
		void *p = own_block(n, f == SHARED_LARGE);
		if (p)
			return p;
	}
	return __libc_malloc(n);
}

void *calloc(size_t k, size_t n)
{
	enum fault f = which();
	size_t bytes = k * n;
	if (f == CALLOC_DIRTY_REUSE && bytes >= LARGE && kept && bytes + HEAD <= kept_len) {
		/* The fault: the kept mapping still holds the freed block's bytes. */
		for (int i = 0; i < SLOTS; i++)
			if (!own[i].map) {
				own[i].map = kept;
				own[i].len = kept_len;
				kept = NULL;
				return own[i].map + HEAD;
			}
	}
	if (bytes >= LARGE && (f == SHARED_LARGE || f == CALLOC_DIRTY_REUSE)) {
		void *p = own_block(bytes, f == SHARED_LARGE);
		if (p)
			return p; /* fresh from mmap: zero */
	}
	return __libc_calloc(k, n);
}

void free(void *p)
{
	int i = p ? slot_of(p) : -1;
	if (i < 0) {
		__libc_free(p);
		return;
	}
	if (which() == CALLOC_DIRTY_REUSE) {
		if (kept)
			munmap(kept, kept_len);
		kept = own[i].map;
		kept_len = own[i].len;
	} else {
		munmap(own[i].map, own[i].len);
	}
	own[i].map = NULL;
}

void *realloc(void *p, size_t n)
{
	enum fault f = which();
	int i = p ? slot_of(p) : -1;
	if (i >= 0 || (f == REALLOC_LOSE_TAIL && p)) {
		size_t old = i >= 0 ? own[i].len - HEAD : malloc_usable_size(p);
		void *q = malloc(n);
		if (!q)
			return NULL;
		size_t keep = old < n ? old : n;
		/* realloc-lose-tail: the block moved, and only the first half came along. */
		memcpy(q, p, f == REALLOC_LOSE_TAIL ? keep / 2 : keep);
		free(p);
		return q;
	}
	return __libc_realloc(p, n);
}
