/* A small persistent pthread pool (no OpenMP: the same code runs on Android).
 *
 * Workers are created by the first region that needs them and then wait for the next one: a short spin
 * (back-to-back layers hand over quickly), then a condition variable. Each task index runs exactly once: its
 * worker claims it, or, if that worker has not started by the time the caller has finished its own task, the
 * caller claims and runs it. The region is then closed (late workers skip it) and only workers still inside a
 * task are waited for, so a busy or slow core delays a region by at most one task. Tasks that pull their work
 * from a shared counter lose nothing at all. One region runs at a time; a region that finds the pool busy
 * (another caller thread, or a nested call) runs its tasks one after the other on its own thread.
 * A forked child starts with no workers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ek_internal.h"

#if defined(_WIN32)

void ek_parallel(int nt, ek_task_fn fn, void *ctx) {
  int t;
  if (nt < 1) nt = 1;
  for (t = 0; t < nt; ++t) fn(ctx, t, nt);
}

#else

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EK_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define EK_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define EK_RELAX() ((void)0)
#endif

#define EK_SPIN 512

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;     /* job fields, worker list, sleeping */
static pthread_mutex_t g_region = PTHREAD_MUTEX_INITIALIZER; /* held by the caller of a region */
static pthread_cond_t g_cv_start = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_cv_done = PTHREAD_COND_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int g_nworkers;        /* under g_mu */
static unsigned g_generation; /* written under g_mu, read atomically while spinning */
static ek_task_fn g_fn;
static void *g_ctx;
static int g_nt;
/* Region state, atomic: generation << 32 | closed << 31 | workers inside the region. */
static uint64_t g_state;
static int g_claimed[EK_MAX_THREADS]; /* atomic: task index taken (by its worker or by the caller) */
#define EK_CLOSED ((uint64_t)1 << 31)
#define EK_ACTIVE ((uint64_t)0x7fffffff)

static void after_fork_child(void) {
  /* Only the forking thread exists in the child: forget the workers and reset every lock. */
  pthread_mutex_init(&g_mu, NULL);
  pthread_mutex_init(&g_region, NULL);
  pthread_cond_init(&g_cv_start, NULL);
  pthread_cond_init(&g_cv_done, NULL);
  g_nworkers = 0;
  g_state = 0;
}

static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_child); }

typedef struct {
  int index;
  unsigned seen;
} worker_start;

/* Enter region `gen` unless it is closed or already over. */
static int try_join(unsigned gen) {
  uint64_t s = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE);
  for (;;) {
    if ((unsigned)(s >> 32) != gen || (s & EK_CLOSED)) return 0;
    if (__atomic_compare_exchange_n(&g_state, &s, s + 1, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return 1;
  }
}

static void *worker_main(void *arg) {
  worker_start st = *(worker_start *)arg;
  free(arg);
  for (;;) {
    ek_task_fn fn;
    void *ctx;
    int nt, spins = 0;
    while (__atomic_load_n(&g_generation, __ATOMIC_ACQUIRE) == st.seen) {
      if (++spins < EK_SPIN) {
        EK_RELAX();
        continue;
      }
      pthread_mutex_lock(&g_mu);
      while (g_generation == st.seen) pthread_cond_wait(&g_cv_start, &g_mu);
      pthread_mutex_unlock(&g_mu);
    }
    pthread_mutex_lock(&g_mu);
    st.seen = g_generation;
    fn = g_fn;
    ctx = g_ctx;
    nt = g_nt;
    pthread_mutex_unlock(&g_mu);
    if (st.index < nt && try_join(st.seen)) {
      uint64_t s;
      if (!__atomic_exchange_n(&g_claimed[st.index], 1, __ATOMIC_ACQ_REL)) fn(ctx, st.index, nt);
      s = __atomic_sub_fetch(&g_state, 1, __ATOMIC_ACQ_REL);
      if ((s & EK_CLOSED) && (s & EK_ACTIVE) == 0) {
        pthread_mutex_lock(&g_mu);
        pthread_cond_signal(&g_cv_done);
        pthread_mutex_unlock(&g_mu);
      }
    }
  }
  return NULL;
}

/* Make sure workers 1..want exist (under g_mu); returns how many there are. */
static int grow_pool(int want) {
  pthread_attr_t attr;
  if (want > EK_MAX_THREADS - 1) want = EK_MAX_THREADS - 1;
  if (g_nworkers >= want) return g_nworkers;
  pthread_once(&g_once, register_atfork);
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  while (g_nworkers < want) {
    pthread_t th;
    worker_start *st = (worker_start *)malloc(sizeof *st);
    if (!st) break;
    st->index = g_nworkers + 1;
    st->seen = g_generation;
    if (pthread_create(&th, &attr, worker_main, st) != 0) {
      free(st);
      break;
    }
    ++g_nworkers;
  }
  pthread_attr_destroy(&attr);
  return g_nworkers;
}

static void run_all(int nt, ek_task_fn fn, void *ctx) {
  int t;
  for (t = 0; t < nt; ++t) fn(ctx, t, nt);
}

void ek_parallel(int nt, ek_task_fn fn, void *ctx) {
  int spins = 0, t;
  if (nt > EK_MAX_THREADS) nt = EK_MAX_THREADS;
  if (nt <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  if (pthread_mutex_trylock(&g_region) != 0) {
    run_all(nt, fn, ctx); /* pool busy: this thread runs every task */
    return;
  }
  pthread_mutex_lock(&g_mu);
  if (grow_pool(nt - 1) < 1) {
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_unlock(&g_region);
    run_all(nt, fn, ctx);
    return;
  }
  for (t = 1; t < nt; ++t) __atomic_store_n(&g_claimed[t], 0, __ATOMIC_RELAXED);
  g_fn = fn;
  g_ctx = ctx;
  g_nt = nt;
  __atomic_store_n(&g_state, (uint64_t)(g_generation + 1u) << 32, __ATOMIC_RELEASE); /* open, nobody inside */
  __atomic_store_n(&g_generation, g_generation + 1u, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&g_cv_start);
  pthread_mutex_unlock(&g_mu);

  fn(ctx, 0, nt);
  /* Tasks whose worker has not started yet: run them here. */
  for (t = 1; t < nt; ++t)
    if (!__atomic_exchange_n(&g_claimed[t], 1, __ATOMIC_ACQ_REL)) fn(ctx, t, nt);

  /* Every task is taken: close the region and wait for the workers still inside. */
  __atomic_fetch_or(&g_state, EK_CLOSED, __ATOMIC_ACQ_REL);
  while (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) & EK_ACTIVE) {
    if (++spins < EK_SPIN) {
      EK_RELAX();
      continue;
    }
    pthread_mutex_lock(&g_mu);
    while (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) & EK_ACTIVE) pthread_cond_wait(&g_cv_done, &g_mu);
    pthread_mutex_unlock(&g_mu);
  }
  pthread_mutex_unlock(&g_region);
}

#endif
