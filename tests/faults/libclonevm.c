/*
 * libclonevm: an interposed libc whose clone drops CLONE_VM from a process clone (one without
 * CLONE_THREAD), so the child gets a copy of the address space instead of sharing its parent's
 * (docs/SEMANTICS.md T30, T31): its stores, maps and unmaps never reach the parent. It shows
 * that cowcheck's CLONE_VM checks can fail. Load it into the executor only:
 *
 *   cowcheck run --under "env LD_PRELOAD=/path/libclonevm.so"
 *
 * Threads are untouched: glibc's pthread_create does not go through the public clone symbol,
 * and a clone with CLONE_THREAD keeps its flags.
 *
 * Build: cc -shared -fPIC -O2 -o libclonevm.so libclonevm.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/types.h>

typedef int (*clone_fn)(int (*)(void *), void *, int, void *, ...);

int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	static clone_fn real_clone;
	if (!real_clone)
		real_clone = (clone_fn)dlsym(RTLD_NEXT, "clone");
	va_list ap;
	va_start(ap, arg);
	pid_t *parent_tid = va_arg(ap, pid_t *);
	void *tls = va_arg(ap, void *);
	pid_t *child_tid = va_arg(ap, pid_t *);
	va_end(ap);
	if ((flags & CLONE_VM) && !(flags & CLONE_THREAD))
		flags &= ~CLONE_VM;
	return real_clone(fn, stack, flags, arg, parent_tid, tls, child_tid);
}
