/*
 * libvfork: an interposed libc whose vfork copies: it is fork, so the child gets a copy of the
 * address space instead of sharing its parent's (docs/SEMANTICS.md T5), and its stores never
 * reach the parent (a vfork as POSIX once allowed it, which Linux's never was). It shows that
 * cowcheck's vfork check can fail. Load it into the executor only:
 *
 *   cowcheck run --under "env LD_PRELOAD=/path/libvfork.so"
 *
 * Every vfork is replaced (there is no pass-through: a vfork wrapper must not return through a
 * frame of its own, since the child would overwrite it before the parent uses it).
 *
 * Build: cc -shared -fPIC -O2 -o libvfork.so libvfork.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/types.h>
#include <unistd.h>

typedef pid_t (*fork_fn)(void);

pid_t vfork(void)
{
	static fork_fn real_fork;
	if (!real_fork)
		real_fork = (fork_fn)dlsym(RTLD_NEXT, "fork");
	return real_fork();
}
