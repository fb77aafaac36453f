/*
 * libhugephys: an interposed libc whose fork copies private hugetlb memory eagerly: the child
 * of a fork rewrites, with its own bytes, the first base page of every huge page mapped in
 * each private writable hugetlb mapping it inherited (`/anon_hugepage` in /proc/self/maps), so
 * that the kernel copies each whole huge page for it at once (`hugetlb_wp()`), and leaves
 * everything else as it was. Values never change, so only the physical channel's predictions
 * of hugetlb pages can catch it (docs/SEMANTICS.md I15, I16): before them, every hugetlb page
 * was left open (L12). Load it into the executor only:
 *
 *   cowcheck run --hugetlb --under "env COWCHECK_HUGEPHYS_FAULT=fork-copy-hugetlb LD_PRELOAD=/path/libhugephys.so"
 *
 * COWCHECK_HUGEPHYS_FAULT selects the fault (one for now):
 *   fork-copy-hugetlb  the child copies every present huge page of its private writable
 *                      hugetlb mappings at once, as described above
 *
 * Only a program's processes misbehave (not the executor or its zygote). Nothing here
 * allocates: the fork wrapper reads /proc/self/maps into a static buffer and each pagemap
 * word with pread. A copy needs a free huge page: where the pool has none the child dies of
 * SIGBUS at once, which the model does not allow either.
 *
 * Build: cc -shared -fPIC -O2 -o libhugephys.so libhugephys.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int wanted(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *f = getenv("COWCHECK_HUGEPHYS_FAULT");
		cached = f && !strcmp(f, "fork-copy-hugetlb");
	}
	return cached;
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

/* Rewrites the first base page of each present huge page of [start, end). */
static void copy_huge_pages(int pagemap, uintptr_t start, uintptr_t end)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t huge = 2UL << 20;
	for (uintptr_t p = start; p + huge <= end; p += huge) {
		uint64_t e = 0;
		if (pread(pagemap, &e, 8, (off_t)(p / page * 8)) != 8)
			continue;
		if (e >> 63 & 1) {
			volatile char *c = (volatile char *)p;
			*c = *c;
		}
	}
}

static void each_private_hugetlb(int pagemap)
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
		if (perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p' &&
		    strstr(perms, "/anon_hugepage"))
			copy_huge_pages(pagemap, start, end);
		if (!nl)
			break;
		line = nl + 1;
	}
}

typedef pid_t (*fork_fn)(void);

pid_t fork(void)
{
	static fork_fn real;
	if (!real)
		real = (fork_fn)dlsym(RTLD_NEXT, "fork");
	pid_t pid = real();
	if (pid == 0 && wanted() && in_program()) {
		int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (pagemap >= 0) {
			each_private_hugetlb(pagemap);
			close(pagemap);
		}
	}
	return pid;
}
