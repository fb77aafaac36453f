/*
 * libglibc: glibc's own allocator with one of its rules broken on purpose, to show that the
 * glibc rules (docs/SEMANTICS.md M8 to M10) catch it. It defines only `free`, so that `malloc`
 * stays glibc's and the executor's probe still says GLIBC_MALLOC. Load it into the executor:
 *
 *   cowcheck run --under "env COWCHECK_GLIBC_FAULT=free-keeps-mapped LD_PRELOAD=/path/libglibc.so"
 *
 * It misbehaves only in a program's processes (two forks below the executor: the zygote's roots
 * and their children; the executor's probes run one fork below it). COWCHECK_GLIBC_FAULT
 * selects the fault (COWCHECK_GLIBC_FAULT_DEPTH=1 moves the start one fork up, for a C
 * reproducer, whose program processes are one fork below its coordinator):
 *   free-keeps-mapped   free of a chunk glibc mapped for itself (the IS_MMAPPED bit of the
 *                       chunk's size word) returns without unmapping it (M9)
 *   threshold-never-rises  free of a mapped chunk unmaps it, then sets the mmap threshold back
 *                       to 128 KiB with mallopt: an allocator whose threshold never rises, so a
 *                       later 300000-byte block lands in a mapping of its own below the
 *                       threshold glibc would have raised (M11)
 *
 * Build: cc -shared -fPIC -O2 -o libglibc.so libglibc.c
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

extern void __libc_free(void *);

/* The chunk's size word lies 8 bytes before the block; bit 1 is IS_MMAPPED (malloc.c). */
#define IS_MMAPPED 0x2

static int depth;
static int on = -1;
static int never_rises;
static int from_depth = 2;

static void child(void)
{
	depth++;
}

__attribute__((constructor)) static void init(void)
{
	const char *f = getenv("COWCHECK_GLIBC_FAULT");
	on = f && !strcmp(f, "free-keeps-mapped");
	never_rises = f && !strcmp(f, "threshold-never-rises");
	if (getenv("COWCHECK_GLIBC_FAULT_DEPTH"))
		from_depth = atoi(getenv("COWCHECK_GLIBC_FAULT_DEPTH"));
	pthread_atfork(NULL, NULL, child);
}

void free(void *p)
{
	int mapped = p && depth >= from_depth && (((size_t *)p)[-1] & IS_MMAPPED);

	if (mapped && on > 0)
		return;
	__libc_free(p);
	if (mapped && never_rises)
		mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}
