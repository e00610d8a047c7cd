// status_file.c — the rank's status file for the launcher (see status_file.h).
#include "base/status_file.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/common.h"
#include "base/fs.h"

static struct {
    pthread_mutex_t mutex;
    char dir[PATH_MAX];
    char host[128];
    int rank;
    long step;
    int written;
} g_status = {PTHREAD_MUTEX_INITIALIZER, "", "", -1, -1, 0};

void status_file_set_dir(const char *dir) {
    pthread_mutex_lock(&g_status.mutex);
    snprintf(g_status.dir, sizeof g_status.dir, "%s", dir ? dir : "");
    pthread_mutex_unlock(&g_status.mutex);
}

void status_file_set_rank(int rank) { g_status.rank = rank; }
void status_file_set_step(long step) { g_status.step = step; }
long status_file_step(void) { return g_status.step; }
int status_file_written(void) { return g_status.written; }

void status_file_set_host(const char *host) {
    pthread_mutex_lock(&g_status.mutex);
    snprintf(g_status.host, sizeof g_status.host, "%s", host ? host : "");
    pthread_mutex_unlock(&g_status.mutex);
}

void status_file_write(const char *reason, const char *collective, int peer, int exit_code) {
    pthread_mutex_lock(&g_status.mutex);
    if (g_status.dir[0] == '\0') {
        pthread_mutex_unlock(&g_status.mutex);
        return;
    }
    char path[PATH_MAX + 64], tmp[PATH_MAX + 96];
    if (g_status.rank >= 0)
        snprintf(path, sizeof path, "%s/rank-%d.status", g_status.dir, g_status.rank);
    else // before MPI_Init a rank may not know its number
        snprintf(path, sizeof path, "%s/pid-%ld.status", g_status.dir, (long)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    char text[512];
    int len =
        snprintf(text, sizeof text,
                 "reason %s\nstep %ld\ncollective %s\npeer %d\nexit_code %d\nhost %s\npid %ld\n",
                 reason, g_status.step, collective ? collective : "none", peer, exit_code,
                 g_status.host[0] ? g_status.host : "unknown", (long)getpid());
    if (len < 0 || (size_t)len >= sizeof text) len = (int)strlen(text);
    if (fs_atomic_write(path, tmp, text, (size_t)len) == TS_OK) g_status.written = 1;
    pthread_mutex_unlock(&g_status.mutex);
}
