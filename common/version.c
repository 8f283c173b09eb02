#include "version.h"

/* Set by the Makefile (-DZTASK_VERSION="..."): a build that forgot it must
   not print a made-up version. */
#ifndef ZTASK_VERSION
#error "ZTASK_VERSION is not defined: build with the Makefile"
#endif

const char *ztask_version(void)
{
    return ZTASK_VERSION;
}
