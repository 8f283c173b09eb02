/*  sqlfault: a test-only SQLite VFS that makes WAL writes fail as on a
    full disk, for the suites that need a commit to fail (test_store: the
    store alone; test_master: a whole master on its thread).

    s_fault_vfs_install makes it the default VFS (every connection opened
    after, store_new's included, goes through it) and forwards everything
    to the real default VFS, except that while s_wal_fault is non-zero
    every write to a WAL file fails with that code: SQLITE_FULL is what the
    unix VFS returns when write(2) reports ENOSPC; s_wal_syncs counts the
    fsyncs of WAL files (--sync acked). s_fault_vfs_remove puts
    the real one back (close the connections opened through it first).

    Process state on purpose (SQLite's VFS list is global): one file of
    tests includes this header once. Threads: s_wal_fault is atomic, set
    by the test's thread and read by whichever thread writes (a master's
    loop or writer thread); install and remove from the test's thread
    while no connection is being opened. Include it after ../ztest.h
    (ck_assert).
*/
#ifndef ZTASK_TESTS_SQLFAULT_H
#define ZTASK_TESTS_SQLFAULT_H

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>

/* A VFS that forwards to the default one, except that while s_wal_fault is
   non-zero every write to a WAL file fails with that code: SQLITE_FULL is
   what the unix VFS returns when write(2) reports ENOSPC. */
static atomic_int s_wal_fault;
static sqlite3_vfs *s_real_vfs;
static sqlite3_vfs s_fault_vfs;

typedef struct {
    sqlite3_file base;
    sqlite3_file *real; /* lives right after this struct */
    bool wal;
} fault_file_t;

#define REAL(f) (((fault_file_t *)(f))->real)

static int f_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}
static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    int fault = atomic_load(&s_wal_fault);
    if (fault && ((fault_file_t *)f)->wal)
        return fault;
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
/* fsyncs of a WAL file, counted (the journal's --sync acked). */
static atomic_int s_wal_syncs;
static int f_sync(sqlite3_file *f, int flags)
{
    if (((fault_file_t *)f)->wal)
        atomic_fetch_add(&s_wal_syncs, 1);
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int f_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int f_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int f_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int f_fcntl(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int f_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int f_devchar(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int f_shmmap(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
static int f_shmlock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void f_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int f_shmunmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods s_fault_io = {
    .iVersion = 3,
    .xClose = f_close,
    .xRead = f_read,
    .xWrite = f_write,
    .xTruncate = f_truncate,
    .xSync = f_sync,
    .xFileSize = f_size,
    .xLock = f_lock,
    .xUnlock = f_unlock,
    .xCheckReservedLock = f_reserved,
    .xFileControl = f_fcntl,
    .xSectorSize = f_sector,
    .xDeviceCharacteristics = f_devchar,
    .xShmMap = f_shmmap,
    .xShmLock = f_shmlock,
    .xShmBarrier = f_shmbarrier,
    .xShmUnmap = f_shmunmap,
    .xFetch = f_fetch,
    .xUnfetch = f_unfetch,
};

static int f_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                  int *out_flags)
{
    (void)vfs;
    fault_file_t *p = (fault_file_t *)file;
    p->real = (sqlite3_file *)(p + 1);
    p->wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = s_real_vfs->xOpen(s_real_vfs, name, p->real, flags, out_flags);
    p->base.pMethods = rc == SQLITE_OK ? &s_fault_io : NULL;
    return rc;
}

/* Makes the fault VFS the default, so store_new opens through it. */
static void s_fault_vfs_install(void)
{
    s_real_vfs = sqlite3_vfs_find(NULL);
    ck_assert_ptr_nonnull(s_real_vfs);
    s_fault_vfs = *s_real_vfs;
    s_fault_vfs.zName = "ztask-test-fault";
    s_fault_vfs.szOsFile = (int)sizeof(fault_file_t) + s_real_vfs->szOsFile;
    s_fault_vfs.xOpen = f_open;
    s_fault_vfs.pNext = NULL;
    ck_assert_int_eq(sqlite3_vfs_register(&s_fault_vfs, 1), SQLITE_OK);
}

static void s_fault_vfs_remove(void)
{
    sqlite3_vfs_unregister(&s_fault_vfs);
    s_wal_fault = 0;
}

#endif
