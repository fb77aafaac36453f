/*
 * libthp: an interposed libc whose fork copies eagerly, but only where a transparent huge page
 * may be: the child of a fork rewrites, with its own bytes, every page it shares with its
 * parent (present, not exclusively mapped, not the zero page) in each whole, naturally aligned
 * PMD (2 MiB with 4 KiB pages) of its private writable mappings that the program advised
 * MADV_HUGEPAGE (the wrapper of madvise remembers the ranges, in a static table the fork
 * copies), and leaves every other page shared. Values never change, so only the physical
 * channel's predictions of advised ranges can catch it (docs/SEMANTICS.md I20 to I23): before
 * they existed, every page advised `hugepage` was left open. Load it into the executor only:
 *
 *   cowcheck run --under "env COWCHECK_THP_FAULT=fork-copy-huge LD_PRELOAD=/path/libthp.so"
 *
 * COWCHECK_THP_FAULT selects the fault:
 *   fork-copy-huge   the child copies the pages of every whole PMD of its private writable
 *                    mappings at once, as described above
 *   fork-copy-zeroes the child copies only the shared pages of those PMDs whose bytes are all
 *                    zero: the untouched pieces of a huge page a write allocated (I24), which
 *                    I21 left open before they were learnt
 *   fork-copy-collapsed
 *                    the child copies the shared pages of each whole PMD that a successful
 *                    MADV_COLLAPSE covered (not those advised MADV_HUGEPAGE): the channel left
 *                    every page of a collapsed PMD open until the view after the collapse told
 *                    which pages it copied (I25)
 *
 * Only a program's processes misbehave (not the executor or its zygote). Nothing here
 * allocates: the fork wrapper reads /proc/self/maps into a static buffer and each pagemap
 * word with pread.
 *
 * Build: cc -shared -fPIC -O2 -o libthp.so libthp.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

/* COWCHECK_THP_FAULT, read once. */
enum mode { NONE, COPY_HUGE, COPY_ZEROES, COPY_COLLAPSED };

static enum mode mode(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_THP_FAULT");
		cached = !f                                 ? NONE
			 : !strcmp(f, "fork-copy-huge")      ? COPY_HUGE
			 : !strcmp(f, "fork-copy-zeroes")    ? COPY_ZEROES
			 : !strcmp(f, "fork-copy-collapsed") ? COPY_COLLAPSED
							     : NONE;
	}
	return (enum mode)cached;
}

static pid_t loader;

__attribute__((constructor)) static void remember_loader(void)
{
	loader = getpid();
}

/* A process of a program (a root or below), not the executor or its zygote. */
static int in_program(void)
{
	return getpid() != loader && getppid() != loader;
}

static char maps[1 << 20];
static int pagemap_fd = -1;
/* The zero page's frame number (read from a page of our own .bss that was only read), so that
 * the zero page is left alone: copying it would break the zero page's rule (I5), which the
 * channel checked before ranges that may be huge were predicted. */
static uint64_t zero_pfn;
static char untouched[3 << 12];

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* Ranges advised MADV_HUGEPAGE (MADV_COLLAPSE in the fork-copy-collapsed mode), oldest first
 * (the table stops growing when full). */
#define MAX_ADVISED 256
static uintptr_t advised[MAX_ADVISED][2];
static int nadvised;

static int is_advised(uintptr_t a)
{
	for (int i = 0; i < nadvised; i++)
		if (advised[i][0] <= a && a < advised[i][1])
			return 1;
	return 0;
}

static int all_zero(const volatile char *c, long n)
{
	for (long i = 0; i < n; i++)
		if (c[i])
			return 0;
	return 1;
}

/* Rewrites the shared pages of each whole aligned PMD in [start, end) that was advised (only
 * those whose bytes are all zero in the fork-copy-zeroes mode). */
static void copy_huge_ranges(uintptr_t start, uintptr_t end)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t pmd = (uintptr_t)page / 8 * (uintptr_t)page;
	uintptr_t first = (start + pmd - 1) & ~(pmd - 1);
	for (uintptr_t p = first; p + pmd <= end; p += pmd) {
		if (!is_advised(p) || !is_advised(p + pmd - 1))
			continue;
		for (uintptr_t a = p; a < p + pmd; a += page) {
			uint64_t e = 0;
			if (pread(pagemap_fd, &e, 8, (off_t)(a / page * 8)) != 8)
				continue;
			if ((e >> 63 & 1) && !(e >> 56 & 1) && (e & ((1ULL << 55) - 1)) != zero_pfn) {
				volatile char *c = (volatile char *)a;
				if (mode() == COPY_ZEROES && !all_zero(c, page))
					continue;
				*c = *c;
			}
		}
	}
}

static void each_private_writable(void)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, maps + n, sizeof(maps) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	maps[n] = 0;
	char *line = maps;
	while (*line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		char *s;
		uintptr_t start = strtoull(line, &s, 16);
		uintptr_t end = strtoull(s + 1, &s, 16);
		const char *perms = s + 1;
		if (perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p' && !strchr(perms, '['))
			copy_huge_ranges(start, end);
		if (!nl)
			break;
		line = nl + 1;
	}
}

typedef pid_t (*fork_fn)(void);
typedef int (*madvise_fn)(void *, size_t, int);

int madvise(void *addr, size_t len, int advice)
{
	static madvise_fn real;
	if (!real)
		real = (madvise_fn)dlsym(RTLD_NEXT, "madvise");
	int r = real(addr, len, advice);
	/* The ranges the fault copies in: advised MADV_HUGEPAGE, or (fork-copy-collapsed)
	 * covered by a successful MADV_COLLAPSE. */
	int remembered = (advice == MADV_HUGEPAGE && (mode() == COPY_HUGE || mode() == COPY_ZEROES)) ||
			 (advice == MADV_COLLAPSE && mode() == COPY_COLLAPSED);
	if (r == 0 && remembered && nadvised < MAX_ADVISED) {
		advised[nadvised][0] = (uintptr_t)addr;
		advised[nadvised][1] = (uintptr_t)addr + len;
		nadvised++;
	}
	return r;
}

pid_t fork(void)
{
	static fork_fn real;
	if (!real)
		real = (fork_fn)dlsym(RTLD_NEXT, "fork");
	pid_t pid = real();
	if (pid == 0 && mode() != NONE && in_program()) {
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (pagemap_fd >= 0) {
			long page = sysconf(_SC_PAGESIZE);
			volatile char *z = (volatile char *)(((uintptr_t)untouched + page - 1) & ~(uintptr_t)(page - 1));
			uint64_t e = 0;
			(void)*z;
			if (pread(pagemap_fd, &e, 8, (off_t)((uintptr_t)z / page * 8)) == 8)
				zero_pfn = e & ((1ULL << 55) - 1);
			each_private_writable();
			close(pagemap_fd);
		}
	}
	return pid;
}
