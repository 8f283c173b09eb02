/*  version: the one version string of ztask, printed by every program's
    --version.

    It is `git describe --tags --always --dirty` of the tree the programs
    were built from (a tag, commits since it, the commit, and "-dirty" for
    uncommitted changes), or the Makefile's VERSION when there is no git
    tree (a release tarball). The Makefile passes it to version.c alone and
    rebuilds that object when it changes.

    Threads: any (a constant).
*/
#ifndef ZTASK_VERSION_H
#define ZTASK_VERSION_H

/* "0.1.0", "v0.2.0-14-g1d3cbc2-dirty"... A static string. */
const char *ztask_version(void);

#endif
