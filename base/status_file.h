// status_file.h — what a rank leaves behind for the launcher when it ends: <dir>/rank-<R>.status.
//
// A launcher protocol, not part of any layer above: the trainer sets the directory, rank, host
// and step as it goes; every way out (ts_exit, ts_fatal, ts_panic, a communicator's deadline)
// writes the file. Format (docs/fault-tolerance.md): `key value` lines
//     reason peer_lost        finished | stopped | bad_input | peer_lost | system | internal
//     step 12                 (-1: before the trainer set a step)
//     collective all-reduce (sum)
//     peer 2                  (-1: not known)
//     exit_code 75
//     host nodeA
//     pid 4242
// written to a temporary name, flushed and renamed, so a reader sees the whole file or none.
// Before the directory is set nothing is written. A rank that does not know its number yet
// writes pid-<PID>.status.
#ifndef TESSERA_STATUS_FILE_H
#define TESSERA_STATUS_FILE_H

#ifdef __cplusplus
extern "C" {
#endif

void status_file_set_dir(const char *dir);
void status_file_set_rank(int rank);
void status_file_set_host(const char *host);
void status_file_set_step(long step);
long status_file_step(void); // the step in progress (-1 before the first)

// Write (or replace) the file. Safe from any thread; failures are logged as warnings and never
// change the outcome (the caller is on its way out).
void status_file_write(const char *reason, const char *collective, int peer, int exit_code);
// 1 once a file was written by this process (a lost peer's file, written where the deadline
// expired, is not overwritten by the exit that follows)
int status_file_written(void);

#ifdef __cplusplus
}
#endif

#endif
