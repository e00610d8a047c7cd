#!/bin/sh
# uts_rsh.sh HOST COMMAND... — an rsh agent for tests: runs COMMAND on "HOST" = this machine, in
# its own UTS namespace whose hostname is HOST, so that Open MPI sees distinct hosts (mpirun
# --mca plm_rsh_agent uts_rsh.sh) and the launcher can reach them (--remote "uts_rsh.sh {host}").
host=$1
shift
exec unshare --uts sh -c "hostname '$host' && exec $*"
