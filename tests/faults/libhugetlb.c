/*
 * libhugetlb: an interposed libc that gets hugetlb wrong on purpose, to show that cowcheck's
 * hugetlb rules (docs/SEMANTICS.md L6, L8) catch it. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_HUGETLB_FAULT=drop-hugetlb LD_PRELOAD=/path/libhugetlb.so"
 *
 * COWCHECK_HUGETLB_FAULT selects one fault:
 *   drop-hugetlb   every mmap with MAP_HUGETLB but the first of the process is made without
 *                  MAP_HUGETLB: base pages of the same length (a libc or emulator that drops
 *                  the flag). The first is left alone, so that the executor's probe (one huge
 *                  page, then munmap of its first base page) still finds hugetlb: otherwise the
 *                  run would rightly make no hugetlb map at all. Every process of a program's
 *                  tree is forked from the executor after its probe.
 *
 * Build: cc -shared -fPIC -O2 -o libhugetlb.so libhugetlb.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum fault { NONE, DROP_HUGETLB };

static enum fault which(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_HUGETLB_FAULT");
		cached = NONE;
		if (f && !strcmp(f, "drop-hugetlb"))
			cached = DROP_HUGETLB;
	}
	return (enum fault)cached;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static void *(*real)(void *, size_t, int, int, int, off_t);
	if (!real)
		real = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
	static int hugetlb_maps;
	if (which() == DROP_HUGETLB && (flags & MAP_HUGETLB) && hugetlb_maps++ > 0)
		flags &= ~MAP_HUGETLB;
	return real(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}
