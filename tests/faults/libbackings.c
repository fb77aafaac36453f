/*
 * libbackings: an interposed libc that gets huge-page backings wrong on purpose, to show that
 * cowcheck's huge-page rules (docs/SEMANTICS.md L1-L3) catch it. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_BACKINGS_FAULT=thp-misalign LD_PRELOAD=/path/libbackings.so"
 *
 * COWCHECK_BACKINGS_FAULT selects one fault:
 *   thp-misalign       a private anonymous mmap of a whole number of PMDs with no address is
 *                      placed one page past a PMD boundary (an allocator or emulator that
 *                      ignores THP alignment; L1), except the first three of the process (so
 *                      that the executor's THP_ALIGN probe, which makes three, still finds the
 *                      kernel's alignment: otherwise the run would rightly not check L1)
 *   collapse-drops     madvise(MADV_COLLAPSE) drops the first page of the range (as
 *                      MADV_DONTNEED would) and returns 0: a collapse that loses data (L3)
 *   collapse-nohuge    madvise(MADV_COLLAPSE) returns 0 without calling the kernel, even where
 *                      the range is MADV_NOHUGEPAGE (L3)
 *
 * Build: cc -shared -fPIC -O2 -o libbackings.so libbackings.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

enum fault { NONE, THP_MISALIGN, COLLAPSE_DROPS, COLLAPSE_NOHUGE };

static enum fault which(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_BACKINGS_FAULT");
		cached = NONE;
		if (!f)
			;
		else if (!strcmp(f, "thp-misalign"))
			cached = THP_MISALIGN;
		else if (!strcmp(f, "collapse-drops"))
			cached = COLLAPSE_DROPS;
		else if (!strcmp(f, "collapse-nohuge"))
			cached = COLLAPSE_NOHUGE;
	}
	return (enum fault)cached;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	static void *(*real)(void *, size_t, int, int, int, off_t);
	if (!real)
		real = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	size_t pmd = ps * (ps / 8);
	static int pmd_maps;
	if (which() == THP_MISALIGN && !addr && len > 0 && len % pmd == 0 &&
	    (flags & (MAP_PRIVATE | MAP_ANONYMOUS)) == (MAP_PRIVATE | MAP_ANONYMOUS) &&
	    !(flags & MAP_SHARED) && ++pmd_maps > 3) {
		char *p = real(NULL, len + pmd, prot, flags, fd, off);
		if (p == MAP_FAILED)
			return p;
		uintptr_t a = ((uintptr_t)p + pmd - 1) / pmd * pmd + ps;
		if (a + len > (uintptr_t)p + len + pmd)
			a -= pmd;
		if (a > (uintptr_t)p)
			munmap(p, a - (uintptr_t)p);
		if ((uintptr_t)p + len + pmd > a + len)
			munmap((void *)(a + len), (uintptr_t)p + len + pmd - (a + len));
		return (void *)a;
	}
	return real(addr, len, prot, flags, fd, off);
}

int madvise(void *addr, size_t len, int advice)
{
	static int (*real)(void *, size_t, int);
	if (!real)
		real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
	if (advice == MADV_COLLAPSE && len > 0) {
		if (which() == COLLAPSE_DROPS) {
			real(addr, (size_t)sysconf(_SC_PAGESIZE), MADV_DONTNEED);
			return 0;
		}
		if (which() == COLLAPSE_NOHUGE)
			return 0;
	}
	return real(addr, len, advice);
}
